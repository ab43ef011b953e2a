import CheckpointFormats
import Testing

@testable import CheckpointConversion

@Suite struct NamingTests {
  @Test(arguments: [
    ("pytorch_model.bin", WeightFormat.safetensors, "model.safetensors"),
    ("pytorch_model-00001-of-00003.bin", .safetensors, "model-00001-of-00003.safetensors"),
    ("adapter_model.bin", .safetensors, "adapter_model.safetensors"),
    ("colbert_linear.pt", .safetensors, "colbert_linear.safetensors"),
    ("sparse_linear.pt", .safetensors, "sparse_linear.safetensors"),
    ("model.safetensors", .torch, "pytorch_model.bin"),
    ("model-00002-of-00003.safetensors", .torch, "pytorch_model-00002-of-00003.bin"),
    ("adapter_model.safetensors", .torch, "adapter_model.bin"),
    ("colbert_linear.safetensors", .torch, "colbert_linear.bin"),
  ])
  func outputName(input: String, target: WeightFormat, expected: String) {
    #expect(WeightNaming.outputName(for: input, to: target) == expected)
  }

  @Test(arguments: [("model.safetensors", WeightFormat.safetensors), ("pytorch_model.bin", .torch), ("x.pt", .torch)])
  func sameFormatHasNoOutputName(input: String, target: WeightFormat) {
    #expect(WeightNaming.outputName(for: input, to: target) == nil)
  }

  @Test(arguments: [
    ("pytorch_model.bin.index.json", WeightFormat.safetensors, "model.safetensors.index.json"),
    ("model.safetensors.index.json", .torch, "pytorch_model.bin.index.json"),
  ])
  func indexName(input: String, target: WeightFormat, expected: String) {
    #expect(WeightNaming.outputIndexName(for: input, to: target) == expected)
  }

  @Test(arguments: [
    "optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin", "optimizer.bin", "random_states_0.pkl",
  ])
  func nonWeightNames(name: String) {
    #expect(WeightNaming.isNonWeightName(name))
  }

  @Test func archiveName() {
    #expect(WeightNaming.archiveName(for: "pytorch_model.bin") == "pytorch_model")
    #expect(WeightNaming.archiveName(for: "pytorch_model-00001-of-00002.bin") == "pytorch_model-00001-of-00002")
  }

  @Test func indexIsWrittenLikeTransformers() {
    let index = ShardIndex(
      weightMap: [
        "b.weight": "model-00002-of-00002.safetensors", "a.weight": "model-00001-of-00002.safetensors",
        "é": "x",
      ],
      metadata: ["total_size": .integer(1234)])
    let text = String(decoding: index.serialized(), as: UTF8.self)
    let expected = """
      {
        "metadata": {
          "total_size": 1234
        },
        "weight_map": {
          "a.weight": "model-00001-of-00002.safetensors",
          "b.weight": "model-00002-of-00002.safetensors",
          "\\u00e9": "x"
        }
      }

      """
    #expect(text == expected)
  }
}
