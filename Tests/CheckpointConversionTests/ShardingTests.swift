import CheckpointConversion
import CheckpointFormats
import Foundation
import Testing

@Suite struct ShardingTests {
  /// huggingface_hub's own example: [6, 6, 2, 6, 2, 2] GB under a 10 GB limit -> [6], [6+2], [6+2+2].
  @Test func splitsLikeHuggingfaceHub() {
    #expect(ShardPlanning.split(sizes: [6, 6, 2, 6, 2, 2], limit: 10) == [[0], [1, 2], [3, 4, 5]])
    // A tensor over the limit gets a shard of its own, placed before the shard being filled.
    #expect(ShardPlanning.split(sizes: [3, 20, 4, 8], limit: 10) == [[1], [0, 2], [3]])
    #expect(ShardPlanning.split(sizes: [10, 10], limit: 10) == [[0], [1]])
    #expect(ShardPlanning.split(sizes: [1, 2, 3], limit: 100) == [[0, 1, 2]])
  }

  @Test func shardNamesAreTransformers() {
    #expect(ShardPlanning.shardNames(stem: "model", ext: ".safetensors", count: 1) == ["model.safetensors"])
    #expect(
      ShardPlanning.shardNames(stem: "pytorch_model", ext: ".bin", count: 2) == [
        "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
      ])
  }

  /// 48-byte wte with lm_head tied to it, then 24-byte layers: under a 50-byte limit the tie stays in wte's
  /// shard although `lm_head.weight` sorts far from it.
  @Test func binToShardedSafetensorsAndBackToShardedBinKeepsTies() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-1")
    try Fixtures.writeTorch(
      folder + "/pytorch_model.bin",
      storages: [
        ("0", .f32, Fixtures.f32((0..<12).map { Float($0) })), ("1", .f32, Fixtures.f32((0..<6).map { Float($0) })),
        ("2", .f32, Fixtures.f32((0..<6).map { -Float($0) })), ("3", .f32, Fixtures.f32([1, 2])),
      ],
      tensors: [
        TensorInfo(name: "wte.weight", dtype: .f32, shape: [4, 3], storageKey: "0"),
        TensorInfo(name: "h.0.weight", dtype: .f32, shape: [2, 3], storageKey: "1"),
        TensorInfo(name: "h.1.weight", dtype: .f32, shape: [2, 3], storageKey: "2"),
        TensorInfo(name: "lm_head.weight", dtype: .f32, shape: [4, 3], storageKey: "0"),
        TensorInfo(name: "ln.bias", dtype: .f32, shape: [2], storageKey: "3"),
      ])
    let safetensors = try fixtures.folder("st")
    let result = try Converter.convert(
      path: folder, options: ConversionOptions(target: .safetensors, outDir: safetensors, maxShardSize: 50))
    // wte (48) | h.0 + h.1 (48) | ln (8)
    let names = ShardPlanning.shardNames(stem: "model", ext: ".safetensors", count: 3)
    #expect(
      Set(result.outputs.map(\.path)) == Set((names + ["model.safetensors.index.json"]).map { safetensors + "/" + $0 }))
    let index = try ShardIndex.read(path: safetensors + "/model.safetensors.index.json")
    #expect(
      index.weightMap == [
        "wte.weight": names[0], "lm_head.weight": names[0], "h.0.weight": names[1], "h.1.weight": names[1],
        "ln.bias": names[2],
      ])
    #expect(index.metadata["total_size"] == .integer(104))
    #expect(index.metadata["total_parameters"] == .integer(26))
    #expect(try TensorComparison.compare(folder, safetensors) == 5)

    let bin = try fixtures.folder("bin")
    _ = try Converter.convert(
      path: safetensors, options: ConversionOptions(target: .torch, outDir: bin, maxShardSize: 40))
    // Under 40: wte (48, over the limit, with lm_head tied to it) | h.0 | h.1 + ln
    let binNames = ShardPlanning.shardNames(stem: "pytorch_model", ext: ".bin", count: 3)
    let binIndex = try ShardIndex.read(path: bin + "/pytorch_model.bin.index.json")
    #expect(binIndex.weightMap["lm_head.weight"] == binNames[0])
    #expect(binIndex.weightMap["wte.weight"] == binNames[0])
    #expect(binIndex.weightMap["ln.bias"] == binNames[2])
    let first = try WeightFile.open(path: bin + "/" + binNames[0])
    let keys = Dictionary(uniqueKeysWithValues: first.tensors.map { ($0.name, $0.storageKey) })
    #expect(keys["lm_head.weight"] != nil && keys["lm_head.weight"] == keys["wte.weight"])
    #expect(try TensorComparison.compare(folder, bin) == 5)
  }

  @Test func oneShardIsWrittenWithoutAnIndex() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-2")
    for (position, values) in [[Float(1), 2], [3, 4]].enumerated() {
      try Fixtures.writeSafetensors(
        folder + "/model-0000\(position + 1)-of-00002.safetensors",
        tensors: [("t\(position)", .f32, [2], Fixtures.f32(values))])
    }
    let index = ShardIndex(
      weightMap: ["t0": "model-00001-of-00002.safetensors", "t1": "model-00002-of-00002.safetensors"],
      metadata: ["total_size": .integer(16)])
    _ = FileManager.default.createFile(
      atPath: folder + "/model.safetensors.index.json", contents: Data(index.serialized()))
    let result = try Converter.convert(
      path: folder, options: ConversionOptions(target: .torch, removeSource: true, maxShardSize: 1 << 30))
    #expect(result.outputs.map(\.path) == [folder + "/pytorch_model.bin"])
    #expect(
      Set(result.removedSources)
        == Set(
          ["model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"].map {
            folder + "/" + $0
          }))
    #expect(try WeightFile.open(path: folder + "/pytorch_model.bin").tensors.map(\.name) == ["t0", "t1"])
  }
}
