import CheckpointFormats
import Testing

@testable import CheckpointConversion

@Suite struct AliasDetectionTests {
  let storages = [
    "0": StorageInfo(key: "0", dtype: .f32, fileOffset: 0, byteCount: 48),
    "1": StorageInfo(key: "1", dtype: .f32, fileOffset: 48, byteCount: 24),
  ]

  @Test func tiedWeightsKeepSortedFirstCompleteName() {
    let tensors = [
      TensorInfo(name: "lm_head.weight", dtype: .f32, shape: [4, 3], storageKey: "0"),
      TensorInfo(name: "wte.weight", dtype: .f32, shape: [4, 3], storageKey: "0"),
      TensorInfo(name: "decoder.weight", dtype: .f32, shape: [4, 3], storageKey: "0"),
    ]
    #expect(
      AliasDetection.exactAliases(tensors: tensors, storages: storages)
        == ["lm_head.weight": "decoder.weight", "wte.weight": "decoder.weight"])
  }

  @Test func partialAndTransposedViewsAreNotAliases() {
    let tensors = [
      TensorInfo(name: "a", dtype: .f32, shape: [2, 3], storageKey: "1"),
      TensorInfo(name: "a_t", dtype: .f32, shape: [3, 2], strides: [1, 3], storageKey: "1"),
      TensorInfo(name: "a_tail", dtype: .f32, shape: [2], storageKey: "1", storageOffset: 4),
      TensorInfo(name: "a_row", dtype: .f32, shape: [3], storageKey: "1"),
    ]
    #expect(AliasDetection.exactAliases(tensors: tensors, storages: storages).isEmpty)
  }

  @Test func identicalIncompleteViewsAreAliases() {
    let tensors = [
      TensorInfo(name: "y", dtype: .f32, shape: [2], storageKey: "1", storageOffset: 2),
      TensorInfo(name: "x", dtype: .f32, shape: [2], storageKey: "1", storageOffset: 2),
    ]
    #expect(AliasDetection.exactAliases(tensors: tensors, storages: storages) == ["y": "x"])
  }

  @Test func completeNameWinsOverSortOrder() {
    // Same storage, but only "b" covers it whole: "a" (a different view) is not an alias at all.
    let tensors = [
      TensorInfo(name: "b", dtype: .f32, shape: [6], storageKey: "1"),
      TensorInfo(name: "c", dtype: .f32, shape: [6], storageKey: "1"),
      TensorInfo(name: "a", dtype: .f32, shape: [3], storageKey: "1"),
    ]
    #expect(AliasDetection.exactAliases(tensors: tensors, storages: storages) == ["c": "b"])
    #expect(AliasDetection.isComplete(tensors[0], storage: storages["1"]))
    #expect(!AliasDetection.isComplete(tensors[2], storage: storages["1"]))
  }

  @Test func metadataAliasesNeedAKeptTensor() {
    let metadata = ["format": "pt", "lm_head.weight": "wte.weight", "note": "hello", "wte.weight": "lm_head.weight"]
    #expect(
      AliasDetection.aliases(fromMetadata: metadata, tensorNames: ["wte.weight", "pt"])
        == ["lm_head.weight": "wte.weight"])
  }

  @Test(arguments: [
    (["lm_head.weight", "transformer.wte.weight"], "transformer.wte.weight"),
    (
      ["cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"],
      "bert.embeddings.word_embeddings.weight"
    ),
    (["model.embed_tokens.weight", "lm_head.weight"], "model.embed_tokens.weight"),
    (["b.weight", "a.weight"], "a.weight"),
    (["lm_head.weight"], "lm_head.weight"),
  ])
  func keepsTheInputEmbeddingOverATiedHead(names: [String], kept: String) {
    #expect(AliasDetection.preferredKeptName(names) == kept)
  }
}
