import Foundation
import Testing

@testable import CheckpointConversion
@testable import CheckpointFormats

/// Real DCP folders (torch 2.15 `dcp.save` of FSDP1 and FSDP2 modules with odd shapes, 2 ranks), packed as the
/// dcp fuzz seeds: `[u32 len(.metadata)][u32 len(__0_0)][.metadata][__0_0.distcp][__1_0.distcp]`.
@Suite struct DCPSeedTests {
  static let seeds = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("fuzz/seeds/dcp")

  /// Unpacks a seed into `folder`; returns the three file paths.
  func unpack(_ seed: String, into folder: String) throws -> [String] {
    let bytes = [UInt8](try Data(contentsOf: Self.seeds.appendingPathComponent(seed)))
    func u32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
    let (a, b) = (u32(0), u32(4))
    let parts = [
      (".metadata", bytes[8..<(8 + a)]), ("__0_0.distcp", bytes[(8 + a)..<(8 + a + b)]),
      ("__1_0.distcp", bytes[(8 + a + b)...]),
    ]
    return try parts.map { name, part in
      let path = folder + "/" + name
      try Data(part).write(to: URL(fileURLWithPath: path))
      return path
    }
  }

  func bytes(_ source: any TensorSource) throws -> [UInt8] {
    var out: [UInt8] = []
    try StreamBuffer.with(size: 64) { scratch in try source.stream(scratch: scratch) { out += $0 } }
    return out
  }

  @Test(arguments: ["dcp_fsdp1_odd.bin", "dcp_fsdp2_odd.bin"])
  func readsEveryTensorWithEmptyShardsAndReplicatedBuffers(seed: String) throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("dcp")
    _ = try unpack(seed, into: folder)
    #expect(DistributedCheckpoint.detect(folder: folder) == .dcp)
    let model = try DistributedCheckpoint.read(folder: folder)
    #expect(model.worldSize == 2)
    let byName = Dictionary(uniqueKeysWithValues: model.tensors.map { ($0.name, $0) })
    #expect(byName["emb.weight"]?.shape == [251, 63])
    #expect(byName["one_row"]?.shape == [1, 7])  // one rank holds an empty shard
    #expect(byName["tiny"]?.shape == [3])
    for tensor in model.tensors {
      #expect(tensor.source.byteCount == Int64(tensor.elementCount * tensor.dtype.byteSize), "\(tensor.name)")
    }
    // Buffers, stored once on one rank: steps = arange(4), mask = [True, False, True], scalar = 0.25.
    let steps = try #require(byName["steps"])
    #expect(
      try bytes(steps.source) == (0..<4).flatMap { v in withUnsafeBytes(of: Int64(v).littleEndian) { Array($0) } })
    #expect(try bytes(try #require(byName["mask"]).source) == [1, 0, 1])
    #expect(try bytes(try #require(byName["scalar"]).source) == Fixtures.f32([0.25]))
  }

  @Test func readsTensorParallelSplits() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("dcp")
    _ = try unpack("dcp_tp_split.bin", into: folder)
    let model = try DistributedCheckpoint.read(folder: folder)
    let byName = Dictionary(uniqueKeysWithValues: model.tensors.map { ($0.name, $0) })
    #expect(byName["col.weight"]?.shape == [5, 7])
    #expect(byName["cube"]?.shape == [3, 4, 5])
    #expect(byName["last"]?.dtype == .bf16)
    let rep = try #require(byName["rep"])
    #expect(try bytes(rep.source) == (0..<6).flatMap { v in withUnsafeBytes(of: Int64(v).littleEndian) { Array($0) } })
    let out = try fixtures.folder("out")
    _ = try Consolidator.consolidate(folder: folder, options: ConversionOptions(target: .torch, outDir: out))
    #expect(try DistributedComparison.compare(folder, out + "/pytorch_model.bin") == 5)
  }

  @Test func readinessWaitsForMetadataAndCompleteRankFiles() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("dcp")
    let paths = try unpack("dcp_fsdp2_odd.bin", into: folder)
    let metadata = try Data(contentsOf: URL(fileURLWithPath: paths[0]))
    try FileManager.default.removeItem(atPath: paths[0])
    #expect(
      DistributedCheckpoint.readiness(folder: folder, previous: nil).0
        == .waiting("waiting for: .metadata in dcp (written last)"))
    try metadata.write(to: URL(fileURLWithPath: paths[0]))
    // A rank file still being written (cut short) is waited for, not an error.
    let rank1 = try Data(contentsOf: URL(fileURLWithPath: paths[2]))
    try rank1.prefix(rank1.count / 2).write(to: URL(fileURLWithPath: paths[2]))
    guard case .waiting(let reason) = DistributedCheckpoint.readiness(folder: folder, previous: nil).0 else {
      Issue.record("expected waiting")
      return
    }
    #expect(reason.contains("__1_0.distcp"), "\(reason)")
    try rank1.write(to: URL(fileURLWithPath: paths[2]))
    let (first, snapshot) = DistributedCheckpoint.readiness(folder: folder, previous: nil)
    #expect(first == .waiting("waiting for: stable sizes of the rank files"))
    #expect(DistributedCheckpoint.readiness(folder: folder, previous: snapshot).0 == .ready(.dcp))
  }

  @Test func consolidatesAndVerifies() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("dcp")
    _ = try unpack("dcp_fsdp1_odd.bin", into: folder)
    let out = try fixtures.folder("out")
    let result = try Consolidator.consolidate(
      folder: folder, options: ConversionOptions(target: .safetensors, outDir: out))
    #expect(result.verified && result.tensorCount == 8)
    #expect(try DistributedComparison.compare(folder, out + "/model.safetensors") == 8)
  }
}
