import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointConversion

/// End-to-end conversions through the real readers and writers (needs CheckpointFormats' formats).
@Suite struct ConversionTests {
  @Test func binToSafetensorsAndBackKeepsEveryName() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-10")
    try Fixtures.writeTiedBin(folder + "/pytorch_model.bin")
    Fixtures.touch(folder + "/optimizer.pt", "not weights")
    let result = try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors))
    #expect(result.outcome == .converted)
    #expect(result.verified)
    #expect(result.outputs.map(\.path) == [folder + "/model.safetensors"])
    #expect(result.tensorCount == 8)
    let st = try WeightFile.open(path: folder + "/model.safetensors")
    #expect(st.metadata["format"] == "pt")
    // The input embedding is kept and the tied head becomes the alias, as transformers saves it.
    #expect(st.metadata["lm_head.weight"] == "wte.weight")
    #expect(!st.tensors.map(\.name).contains("lm_head.weight"))
    #expect(st.tensors.count == 7)
    #expect(try TensorComparison.compare(folder + "/pytorch_model.bin", folder + "/model.safetensors") == 8)

    let back = try fixtures.folder("back")
    let second = try Converter.convert(
      path: folder + "/model.safetensors", options: ConversionOptions(target: .torch, outDir: back))
    #expect(second.outputs.map(\.path) == [back + "/pytorch_model.bin"])
    #expect(try TensorComparison.compare(folder + "/pytorch_model.bin", back + "/pytorch_model.bin") == 8)
    let bin = try WeightFile.open(path: back + "/pytorch_model.bin")
    let keys = Dictionary(uniqueKeysWithValues: bin.tensors.map { ($0.name, $0.storageKey) })
    #expect(keys["wte.weight"] != nil && keys["wte.weight"] == keys["lm_head.weight"])
    #expect(Fixtures.listing(folder).contains("optimizer.pt"))
  }

  @Test func sourcesUnchangedAndFolderTimesKept() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-20")
    try Fixtures.writeTiedBin(folder + "/pytorch_model.bin")
    let before = Fixtures.bytes(folder + "/pytorch_model.bin")
    Fixtures.backdate(folder)
    let mtime = Fixtures.mtime(folder)
    _ = try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors))
    #expect(Fixtures.bytes(folder + "/pytorch_model.bin") == before)
    #expect(Fixtures.mtime(folder) == mtime)
    #expect(Fixtures.listing(folder) == ["model.safetensors", "pytorch_model.bin"])
  }

  @Test func shardedIndexIsRewritten() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-30")
    try Fixtures.writeTorch(
      folder + "/pytorch_model-00001-of-00002.bin", storages: [("0", .f32, Fixtures.f32([1, 2, 3, 4]))],
      tensors: [
        TensorInfo(name: "embed.weight", dtype: .f32, shape: [2, 2], storageKey: "0"),
        TensorInfo(name: "lm_head.weight", dtype: .f32, shape: [2, 2], storageKey: "0"),
      ])
    try Fixtures.writeTorch(
      folder + "/pytorch_model-00002-of-00002.bin", storages: [("0", .i64, Fixtures.i64([7, 8, 9]))],
      tensors: [TensorInfo(name: "ids", dtype: .i64, shape: [3], storageKey: "0")])
    let index = ShardIndex(
      weightMap: [
        "embed.weight": "pytorch_model-00001-of-00002.bin", "lm_head.weight": "pytorch_model-00001-of-00002.bin",
        "ids": "pytorch_model-00002-of-00002.bin",
      ], metadata: ["total_size": .integer(40)])
    _ = FileManager.default.createFile(
      atPath: folder + "/pytorch_model.bin.index.json", contents: Data(index.serialized()))
    let result = try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors))
    #expect(
      Set(result.outputs.map(\.path)) == [
        folder + "/model-00001-of-00002.safetensors", folder + "/model-00002-of-00002.safetensors",
        folder + "/model.safetensors.index.json",
      ])
    let written = try ShardIndex.read(path: folder + "/model.safetensors.index.json")
    #expect(
      written.weightMap == [
        "embed.weight": "model-00001-of-00002.safetensors", "lm_head.weight": "model-00001-of-00002.safetensors",
        "ids": "model-00002-of-00002.safetensors",
      ])
    #expect(written.metadata["total_size"] == .integer(40))

    let back = try fixtures.folder("back")
    _ = try Converter.convert(path: folder + "/", options: ConversionOptions(target: .torch, outDir: back))
    let roundTrip = try ShardIndex.read(path: back + "/pytorch_model.bin.index.json")
    #expect(roundTrip.weightMap == index.weightMap)
    #expect(try TensorComparison.compare(folder, back) == 3)
  }

  @Test func castsFloatTensorsOnly() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-40")
    // 1.0, 1.00390625 (tie -> even: 1.0), 1.01171875 (tie -> even: 1.015625), -inf
    let values: [Float] = [1.0, 1.003_906_25, 1.011_718_75, -.infinity]
    try Fixtures.writeSafetensors(
      folder + "/model.safetensors",
      tensors: [("w", .f32, [4], Fixtures.f32(values)), ("ids", .i64, [2], Fixtures.i64([5, 6]))])
    let result = try Converter.convert(path: folder, options: ConversionOptions(target: .torch, dtype: .bf16))
    #expect(result.verified)
    let bin = try WeightFile.open(path: folder + "/pytorch_model.bin")
    let w = try #require(bin.tensors.first { $0.name == "w" })
    let ids = try #require(bin.tensors.first { $0.name == "ids" })
    #expect(w.dtype == .bf16)
    #expect(ids.dtype == .i64)
    let storage = try #require(bin.storages[w.storageKey])
    let bytes = try bin.file.readBytes(at: storage.fileOffset, count: 8)
    #expect(bytes == [0x80, 0x3F, 0x80, 0x3F, 0x82, 0x3F, 0x80, 0xFF])
  }

  @Test func refusesToOverwriteForeignFile() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-50")
    try Fixtures.writeTiedBin(folder + "/pytorch_model.bin")
    Fixtures.touch(folder + "/model.safetensors", "someone else's")
    let error = #expect(throws: CheckpointError.self) {
      try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors))
    }
    #expect(error?.code == .exists)
    #expect(Fixtures.bytes(folder + "/model.safetensors") == Array("someone else's".utf8))
    #expect(Fixtures.listing(folder) == ["model.safetensors", "pytorch_model.bin"])
    _ = try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors, force: true))
    #expect(try TensorComparison.compare(folder + "/pytorch_model.bin", folder + "/model.safetensors") == 8)
    // Written by ckptd: a second run may replace it without --force.
    _ = try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors))
  }

  @Test(arguments: [Int64(1), 60, 150])
  func injectedFailureLeavesNothing(after bytes: Int64) throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-60")
    try Fixtures.writeTiedBin(folder + "/pytorch_model.bin")
    try Fixtures.writeTiedBin(folder + "/colbert_linear.pt")
    let before = Fixtures.listing(folder)
    Fixtures.backdate(folder)
    let mtime = Fixtures.mtime(folder)
    #expect(throws: CheckpointError.self) {
      try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors, failAfterBytes: bytes))
    }
    #expect(Fixtures.listing(folder) == before)
    #expect(Fixtures.mtime(folder) == mtime)
  }

  @Test func cancellationLeavesNothing() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-61")
    try Fixtures.writeTiedBin(folder + "/pytorch_model.bin")
    let error = #expect(throws: CheckpointError.self) {
      try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors, isCancelled: { true }))
    }
    #expect(error?.code == .cancelled)
    #expect(Fixtures.listing(folder) == ["pytorch_model.bin"])
  }

  @Test func aLostClaimBeforeTheCommitLeavesNothing() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-63")
    try Fixtures.writeTiedBin(folder + "/pytorch_model.bin")
    let asked = Mutexed(0)
    var options = ConversionOptions(target: .safetensors, isCancelled: { false })
    options.stillOwned = {
      asked.withLock { $0 += 1 }
      return false
    }
    let error = #expect(throws: CheckpointError.self) { try Converter.convert(path: folder, options: options) }
    #expect(error?.code == .cancelled)
    #expect(asked.withLock { $0 } == 1, "asked once, right before the commit")
    #expect(Fixtures.listing(folder) == ["pytorch_model.bin"])
  }

  @Test func folderDeletedMidwayIsReportedAsVanished() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-62")
    try Fixtures.writeTiedBin(folder + "/pytorch_model.bin")
    let rotate: @Sendable (Int64, Int64) -> Void = { _, _ in try? FileManager.default.removeItem(atPath: folder) }
    let error = #expect(throws: CheckpointError.self) {
      try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors, progress: rotate))
    }
    #expect(error?.code == .vanished)
    #expect(!FileManager.default.fileExists(atPath: folder))
  }

  @Test func removeSourceAfterVerification() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-70")
    try Fixtures.writeTiedBin(folder + "/pytorch_model.bin")
    Fixtures.touch(folder + "/training_args.bin")
    Fixtures.touch(folder + "/trainer_state.json", "{}")
    let result = try Converter.convert(
      path: folder, options: ConversionOptions(target: .safetensors, removeSource: true))
    #expect(result.removedSources == [folder + "/pytorch_model.bin"])
    #expect(Fixtures.listing(folder) == ["model.safetensors", "trainer_state.json", "training_args.bin"])
  }

  @Test func folderAlreadyInTargetFormatIsUntouched() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-80")
    try Fixtures.writeSafetensors(folder + "/model.safetensors", tensors: [("w", .f32, [1], Fixtures.f32([1]))])
    let result = try Converter.convert(path: folder, options: ConversionOptions(target: .safetensors))
    #expect(result.outcome == .alreadyInTargetFormat)
    #expect(result.outputs.isEmpty)
    #expect(Fixtures.listing(folder) == ["model.safetensors"])
  }

  @Test func verifyReportsFirstDifference() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("files")
    try Fixtures.writeSafetensors(folder + "/a.safetensors", tensors: [("w", .f32, [2], Fixtures.f32([1, 2]))])
    try Fixtures.writeSafetensors(folder + "/b.safetensors", tensors: [("w", .f32, [2], Fixtures.f32([1, 3]))])
    try Fixtures.writeSafetensors(folder + "/c.safetensors", tensors: [("v", .f32, [2], Fixtures.f32([1, 2]))])
    let error = #expect(throws: CheckpointError.self) {
      try TensorComparison.compare(folder + "/a.safetensors", folder + "/b.safetensors")
    }
    #expect(error?.code == .mismatch)
    #expect(error?.message.contains("at byte 6") == true)
    #expect(throws: CheckpointError.self) {
      try TensorComparison.compare(folder + "/a.safetensors", folder + "/c.safetensors")
    }
    #expect(try TensorComparison.compare(folder + "/a.safetensors", folder + "/a.safetensors") == 1)
  }
}
