import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointConversion

#if canImport(Glibc)
  import Glibc
#endif

/// Checkpoint folders of other shapes: FlagEmbedding heads, PEFT adapters, permissions, single files.
@Suite struct FolderKindsTests {
  /// A FlagEmbedding M3 folder: the model in safetensors, two heads saved with torch.save.
  func flagEmbeddingFolder(_ fixtures: Fixtures) throws -> String {
    let folder = try fixtures.folder("checkpoint-100")
    try Fixtures.writeSafetensors(
      folder + "/model.safetensors", tensors: [("encoder.weight", .f32, [2, 2], Fixtures.f32([1, 2, 3, 4]))])
    for head in ["colbert_linear", "sparse_linear"] {
      try Fixtures.writeTorch(
        folder + "/\(head).pt", storages: [("0", .f32, Fixtures.f32([5, 6]))],
        tensors: [TensorInfo(name: "weight", dtype: .f32, shape: [1, 2], storageKey: "0", isParameter: true)])
    }
    Fixtures.touch(folder + "/optimizer.pt")
    Fixtures.touch(folder + "/rng_state.pth")
    return folder
  }

  @Test func flagEmbeddingHeadsToSafetensors() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try flagEmbeddingFolder(fixtures)
    let result = try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors))
    #expect(
      result.outputs.map(\.path).sorted() == [
        folder + "/colbert_linear.safetensors", folder + "/sparse_linear.safetensors",
      ])
    #expect(try TensorComparison.compare(folder + "/colbert_linear.pt", folder + "/colbert_linear.safetensors") == 1)
  }

  @Test func flagEmbeddingModelToBin() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try flagEmbeddingFolder(fixtures)
    let result = try Converter.convert(path: folder, options: ConversionOptions(target: .torch))
    #expect(result.outputs.map(\.path) == [folder + "/pytorch_model.bin"])
    #expect(try TensorComparison.compare(folder + "/model.safetensors", folder + "/pytorch_model.bin") == 1)
  }

  @Test func adapterAndPermissions() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-7")
    let source = folder + "/adapter_model.safetensors"
    try Fixtures.writeSafetensors(
      source,
      tensors: [
        ("base_model.model.q.lora_A.weight", .bf16, [2, 2], Fixtures.pattern(8, seed: 1)),
        ("base_model.model.q.lora_B.weight", .bf16, [2, 2], Fixtures.pattern(8, seed: 2)),
      ])
    chmod(source, 0o640)
    _ = try Converter.convert(path: folder, options: ConversionOptions(target: .torch))
    var info = stat()
    #expect(stat(folder + "/adapter_model.bin", &info) == 0)
    #expect(info.st_mode & 0o777 == 0o640)
    #expect(try TensorComparison.compare(source, folder + "/adapter_model.bin") == 2)
  }

  @Test func singleFileBesideItself() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("loose")
    try Fixtures.writeTiedBin(folder + "/pytorch_model.bin")
    let result = try Converter.convert(
      path: folder + "/pytorch_model.bin", options: ConversionOptions(target: .safetensors, dtype: .f16))
    #expect(result.outputs.map(\.path) == [folder + "/model.safetensors"])
    let st = try WeightFile.open(path: folder + "/model.safetensors")
    #expect(st.tensors.first { $0.name == "position_ids" }?.dtype == .i64)
    #expect(st.tensors.first { $0.name == "wte.weight" }?.dtype == .f16)
    #expect(st.metadata["lm_head.weight"] == "wte.weight")
  }

  @Test func foreignIndexNameIsRefused() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-8")
    try Fixtures.writeTiedBin(folder + "/pytorch_model.bin")
    Fixtures.touch(folder + "/model.safetensors.index.json", "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}")
    let error = #expect(throws: CheckpointError.self) {
      try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors))
    }
    #expect(error?.code == .forbidden)
    #expect(Fixtures.listing(folder) == ["model.safetensors.index.json", "pytorch_model.bin"])
  }
}
