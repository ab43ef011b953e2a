import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointConversion

@Suite struct ScannerTests {
  /// A Trainer checkpoint folder with sharded safetensors, an adapter, FlagEmbedding heads and the
  /// Trainer's non-weight files. The scanner only looks at names and the index.
  func trainerFolder(_ fixtures: Fixtures) throws -> String {
    let folder = try fixtures.folder("checkpoint-500")
    for name in [
      "config.json", "generation_config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
      "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth", "rng_state_1.pth", "training_args.bin",
      "trainer_state.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
      "colbert_linear.pt", "sparse_linear.pt", "adapter_model.bin", ".ckptd-tmp.model.safetensors.abc",
    ] {
      Fixtures.touch(folder + "/" + name)
    }
    let index = ShardIndex(weightMap: [
      "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
    ])
    _ = FileManager.default.createFile(
      atPath: folder + "/model.safetensors.index.json", contents: Data(index.serialized()))
    return folder
  }

  @Test func classifiesTrainerFolder() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let scan = try CheckpointScanner.scan(folder: try trainerFolder(fixtures))
    #expect(
      scan.sets == [
        WeightSet(
          format: .safetensors, indexName: "model.safetensors.index.json",
          files: ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
        WeightSet(format: .torch, files: ["adapter_model.bin"]),
        WeightSet(format: .torch, files: ["colbert_linear.pt"]),
        WeightSet(format: .torch, files: ["sparse_linear.pt"]),
      ])
    #expect(scan.sets(in: .safetensors).count == 1)
  }

  @Test(arguments: ["../model.safetensors", "/etc/passwd", "sub/model.safetensors", ".."])
  func refusesIndexEntriesOutsideTheFolder(shard: String) throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-1")
    let index = ShardIndex(weightMap: ["a": shard])
    _ = FileManager.default.createFile(
      atPath: folder + "/model.safetensors.index.json", contents: Data(index.serialized()))
    #expect(throws: CheckpointError.self) { try CheckpointScanner.scan(folder: folder) }
  }

  @Test func refusesIndexWithMissingShard() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-1")
    let index = ShardIndex(weightMap: ["a": "model-00001-of-00002.safetensors"])
    _ = FileManager.default.createFile(
      atPath: folder + "/model.safetensors.index.json", contents: Data(index.serialized()))
    #expect(throws: CheckpointError.self) { try CheckpointScanner.scan(folder: folder) }
  }

  @Test func refusesSymlinkLeadingOutside() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-1")
    let outside = try fixtures.folder("elsewhere") + "/weights.safetensors"
    Fixtures.touch(outside)
    try FileManager.default.createSymbolicLink(atPath: folder + "/model.safetensors", withDestinationPath: outside)
    let error = #expect(throws: CheckpointError.self) { try CheckpointScanner.scan(folder: folder) }
    #expect(error?.code == .forbidden)
  }

  @Test func acceptsSymlinkInsideFolder() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-1")
    Fixtures.touch(folder + "/real.safetensors")
    try FileManager.default.createSymbolicLink(
      atPath: folder + "/model.safetensors", withDestinationPath: folder + "/real.safetensors")
    let scan = try CheckpointScanner.scan(folder: folder)
    #expect(scan.sets.map(\.files) == [["model.safetensors"], ["real.safetensors"]])
  }
}
