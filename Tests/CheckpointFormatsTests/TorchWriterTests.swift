import Foundation
import Testing

@testable import CheckpointFormats

/// A tensor layout for the writer tests: storages by key with element counts, tensors viewing them.
struct TorchFixture {
  struct Storage {
    var key: String
    var dtype: DType
    var numel: Int
    /// Deterministic content: byte j of storage number `index`.
    func bytes(index: Int) -> [UInt8] {
      (0..<(numel * dtype.byteSize)).map { j in dtype == .bool ? UInt8(j % 2) : UInt8((j * 7 + index * 13 + 1) & 0xFF) }
    }
  }

  var storages: [Storage]
  var tensors: [TensorInfo]

  var outputStorages: [OutputStorage] {
    storages.enumerated().map { OutputStorage(key: $1.key, dtype: $1.dtype, source: BytesSource($1.bytes(index: $0))) }
  }

  /// Writes the fixture with `TorchWriter` to `path` and commits it.
  func write(to path: String) throws {
    let output = try OutputFile(path: path)
    try StreamBuffer.with(size: 1024) { (scratch) in
      try TorchWriter.write(
        storages: outputStorages, tensors: tensors, archiveName: TorchWriter.archiveName(forFile: path), to: output,
        scratch: scratch)
    }
    try output.commit()
  }

  /// Every dtype, a parameter, tied weights, strided views, an empty and a 0-dim tensor.
  static var mixed: TorchFixture {
    var storages: [Storage] = []
    var tensors: [TensorInfo] = []
    for dtype in DType.allCases {
      let key = "s_" + dtype.rawValue
      storages.append(Storage(key: key, dtype: dtype, numel: 6))
      tensors.append(TensorInfo(name: "t." + dtype.torchName, dtype: dtype, shape: [2, 3], storageKey: key))
    }
    storages.append(Storage(key: "tied", dtype: .f32, numel: 12))
    tensors.append(TensorInfo(name: "embed.weight", dtype: .f32, shape: [3, 4], storageKey: "tied"))
    tensors.append(TensorInfo(name: "lm_head.weight", dtype: .f32, shape: [3, 4], storageKey: "tied"))
    tensors.append(TensorInfo(name: "transposed", dtype: .f32, shape: [4, 3], strides: [1, 4], storageKey: "tied"))
    tensors.append(
      TensorInfo(name: "slice", dtype: .f32, shape: [2, 2], strides: [4, 1], storageKey: "tied", storageOffset: 5))
    tensors.append(TensorInfo(name: "expanded", dtype: .f32, shape: [5, 4], strides: [0, 1], storageKey: "tied"))
    storages.append(Storage(key: "param", dtype: .bf16, numel: 4))
    tensors.append(
      TensorInfo(name: "p", dtype: .bf16, shape: [4], storageKey: "param", isParameter: true, requiresGrad: true))
    storages.append(Storage(key: "frozen", dtype: .f16, numel: 2))
    tensors.append(TensorInfo(name: "frozen", dtype: .f16, shape: [2], storageKey: "frozen", isParameter: true))
    storages.append(Storage(key: "scalar", dtype: .f64, numel: 1))
    tensors.append(TensorInfo(name: "scalar", dtype: .f64, shape: [], storageKey: "scalar"))
    storages.append(Storage(key: "empty", dtype: .f32, numel: 0))
    tensors.append(TensorInfo(name: "empty", dtype: .f32, shape: [0, 5], storageKey: "empty"))
    storages.append(Storage(key: "grad", dtype: .f32, numel: 2))
    tensors.append(TensorInfo(name: "grad", dtype: .f32, shape: [2], storageKey: "grad", requiresGrad: true))
    storages.append(Storage(key: "big", dtype: .u8, numel: 70_000))
    tensors.append(TensorInfo(name: "näme/ünïcode", dtype: .u8, shape: [70_000], storageKey: "big"))
    return TorchFixture(storages: storages, tensors: tensors)
  }
}

@Suite struct TorchWriterTests {
  @Test func recordsAreInTorchOrderWithRenumberedStorages() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let fixture = TorchFixture(
      storages: [
        .init(key: "unused", dtype: .f32, numel: 3), .init(key: "b", dtype: .i64, numel: 2),
        .init(key: "a", dtype: .f32, numel: 4),
      ],
      tensors: [
        TensorInfo(name: "first", dtype: .f32, shape: [4], storageKey: "a"),
        TensorInfo(name: "second", dtype: .i64, shape: [2], storageKey: "b"),
        TensorInfo(name: "alias", dtype: .f32, shape: [2, 2], storageKey: "a"),
      ])
    let path = dir + "/pytorch_model.bin"
    try fixture.write(to: path)
    let zip = try TestZip(path: path)
    #expect(
      zip.entries.map(\.name) == [
        "pytorch_model/data.pkl", "pytorch_model/.format_version", "pytorch_model/.storage_alignment",
        "pytorch_model/byteorder", "pytorch_model/data/0", "pytorch_model/data/1", "pytorch_model/version",
        "pytorch_model/.data/serialization_id",
      ])
    #expect(zip.bytes.starts(with: [0x50, 0x4B, 0x03, 0x04]))
    let contents = zip.entries.map { zip.data($0) }
    #expect(contents[1] == Array("1".utf8) && contents[2] == Array("64".utf8) && contents[3] == Array("little".utf8))
    #expect(contents[4] == fixture.storages[2].bytes(index: 2))  // "a" first used, so data/0
    #expect(contents[5] == fixture.storages[1].bytes(index: 1))
    #expect(contents[6] == Array("3\n".utf8))
    #expect(contents[7].count == 40 && contents[7].allSatisfy { (0x30...0x39).contains($0) })
    for entry in zip.entries {
      #expect(entry.dataOffset % 64 == 0)
      #expect(entry.crc == referenceCRC32(zip.data(entry)))
    }
    // Deterministic: the same input gives the same bytes.
    let again = dir + "/again/pytorch_model.bin"
    try FileManager.default.createDirectory(atPath: dir + "/again", withIntermediateDirectories: true)
    try fixture.write(to: again)
    #expect(try TestZip(path: again).bytes == zip.bytes)
  }

  @Test func mixedFixtureWritesAValidArchive() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/model.bin"
    let fixture = TorchFixture.mixed
    try fixture.write(to: path)
    let zip = try TestZip(path: path)
    // One record per used storage: tied names share one.
    #expect(zip.entries.filter { $0.name.hasPrefix("model/data/") }.count == fixture.storages.count)
    for entry in zip.entries {
      #expect(entry.name.hasPrefix("model/"))
      #expect(entry.dataOffset % 64 == 0)
      #expect(entry.crc == referenceCRC32(zip.data(entry)))
    }
  }

  enum Broken: String, CaseIterable {
    case missingStorage, dtypeMismatch, pastTheEnd, offsetPastTheEnd, negativeStride, duplicateName, rankMismatch
    case partialElement, duplicateStorage
  }

  @Test(arguments: Broken.allCases)
  func invalidInputIsRefused(broken: Broken) throws {
    var storages = [OutputStorage(key: "s", dtype: .f32, source: BytesSource([UInt8](repeating: 0, count: 24)))]
    var tensor = TensorInfo(name: "x", dtype: .f32, shape: [2, 3], storageKey: "s")
    var extra: [TensorInfo] = []
    switch broken {
    case .missingStorage: tensor.storageKey = "nope"
    case .dtypeMismatch: tensor.dtype = .i32
    case .pastTheEnd: tensor.shape = [2, 4]
    case .offsetPastTheEnd: tensor.storageOffset = 1
    case .negativeStride: tensor.strides = [3, -1]
    case .duplicateName: extra = [tensor]
    case .rankMismatch: tensor.strides = [1]
    case .partialElement: storages = [OutputStorage(key: "s", dtype: .f32, source: BytesSource([1, 2, 3]))]
    case .duplicateStorage: storages += storages
    }
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let output = try OutputFile(path: dir + "/bad.bin")
    #expect(throws: CheckpointError.self) {
      try StreamBuffer.with(size: 256) { (scratch) in
        try TorchWriter.write(
          storages: storages, tensors: [tensor] + extra, archiveName: "bad", to: output, scratch: scratch)
      }
    }
    output.abandon()
    #expect(!FileManager.default.fileExists(atPath: dir + "/bad.bin"))
  }

  @Test(arguments: [
    ("/a/b/pytorch_model.bin", "pytorch_model"), ("optimizer.pt", "optimizer"), ("x.tar.gz", "x.tar"),
    ("noext", "noext"), ("/d/mödel.bin", "archive"), (".bin", "archive"),
  ])
  func archiveNameFollowsTorch(path: String, expected: String) {
    #expect(TorchWriter.archiveName(forFile: path) == expected)
  }
}
