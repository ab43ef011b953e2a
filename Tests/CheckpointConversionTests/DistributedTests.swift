import Foundation
import Testing

@testable import CheckpointConversion
@testable import CheckpointFormats

@Suite struct DistributedTests {
  func bytes(_ source: any TensorSource) throws -> [UInt8] {
    var out: [UInt8] = []
    try StreamBuffer.with(size: 8) { scratch in try source.stream(scratch: scratch) { out += $0 } }
    return out
  }

  func expectError(_ text: String, naming file: String, _ body: () throws -> Void) {
    do {
      try body()
      Issue.record("expected an error containing '\(text)'")
    } catch let error as CheckpointError {
      #expect(error.message.contains(text), "\(error)")
      #expect(error.description.contains(file), "\(error)")
      #expect(!error.description.contains("\n"), "\(error)")
    } catch {
      Issue.record("unexpected error \(error)")
    }
  }

  @Test(arguments: [2, 3])
  func mapsPartitionsAcrossRankBoundaries(stage: Int) throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let zero = ZeroFixture(folder: try fixtures.folder("checkpoint-4"))
    if stage == 2 { try zero.writeZero2() } else { try zero.writeZero3() }
    #expect(DistributedCheckpoint.detect(folder: zero.folder) != nil)
    let model = try DistributedCheckpoint.read(folder: zero.folder)
    #expect(model.kind == .zero(stage: stage))
    #expect(model.worldSize == 2)
    // ZeRO-2's fixture has buffers: first, int64 kept, bfloat16 as float32 (zero_to_fp32.py's output dtype).
    let buffers = stage == 2 ? ["steps", "scale"] : []
    #expect(model.tensors.map(\.name) == buffers + ["a", "b"])
    let params = Array(model.tensors.suffix(2))
    #expect(params.map(\.shape) == [[3], [2, 2]])
    #expect(try bytes(params[0].source) == ZeroFixture.f32([1, 2, 3]))
    #expect(try bytes(params[1].source) == ZeroFixture.f32([4, 5, 6, 7]))
    if stage == 2 {
      #expect(model.tensors[0].dtype == .i64 && model.tensors[1].dtype == .f32)
      #expect(try bytes(model.tensors[0].source) == [7, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0])
      #expect(try bytes(model.tensors[1].source) == ZeroFixture.f32([1.5, -2]))
    }
    #expect(model.aliases.map(\.alias) == ["c"] && model.aliases.map(\.target) == ["a"])
    #expect(model.parameterCount == 7 + buffers.count * 2)
  }

  @Test(arguments: [WeightFormat.torch, .safetensors])
  func consolidatesIntoOneVerifiedFile(target: WeightFormat) throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let zero = ZeroFixture(folder: try fixtures.folder("checkpoint-4"))
    try zero.writeZero3()
    #expect(try Consolidator.shouldConsolidate(folder: zero.folder, mode: .auto))
    #expect(try !Consolidator.shouldConsolidate(folder: zero.folder, mode: .never))
    let result = try Consolidator.consolidate(folder: zero.folder, options: ConversionOptions(target: target))
    #expect(result.verified && result.tensorCount == 3)
    let written = try WeightFile.open(path: zero.folder + "/" + Consolidator.outputName(target))
    let found = TensorComparison.found(in: written)
    #expect(Set(found.keys) == ["a", "b", "c"])
    for (name, values) in [("a", [Float(1), 2, 3]), ("b", [4, 5, 6, 7]), ("c", [1, 2, 3])] {
      let view = try #require(found[name])
      #expect(try bytes(written.source(for: view.view)) == ZeroFixture.f32(values), "\(name)")
    }
    // Now the folder has weights: auto leaves it alone, always still consolidates.
    #expect(try !Consolidator.shouldConsolidate(folder: zero.folder, mode: .auto))
    #expect(try Consolidator.shouldConsolidate(folder: zero.folder, mode: .always))
  }

  @Test(arguments: [WeightFormat.torch, .safetensors])
  func consolidatesIntoShardsWithAnIndexUnderMaxShardSize(target: WeightFormat) throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let zero = ZeroFixture(folder: try fixtures.folder("checkpoint-4"))
    try zero.writeZero3()
    // a (12 bytes) fills a 12-byte shard; b (16 bytes) is over the limit and gets a shard of its own,
    // placed before the one being filled (huggingface_hub's order); c, tied to a, stays with a.
    let options = ConversionOptions(target: target, maxShardSize: 12)
    let result = try Consolidator.convert(path: zero.folder, mode: .auto, options: options)
    let stem = target == .safetensors ? "model" : "pytorch_model"
    let ext = target == .safetensors ? ".safetensors" : ".bin"
    let names = ["\(stem)-00001-of-00002\(ext)", "\(stem)-00002-of-00002\(ext)"]
    #expect(result.outputs.map { OutputFile.split($0.path).1 } == names + [stem + ext + ".index.json"])
    #expect(result.verified && result.tensorCount == 3)
    #expect(!FileManager.default.fileExists(atPath: zero.folder + "/" + Consolidator.outputName(target)))
    let index = try ShardIndex.read(path: zero.folder + "/" + stem + ext + ".index.json")
    #expect(index.weightMap == ["b": names[0], "a": names[1], "c": names[1]])
    #expect(index.metadata["total_size"] == .integer(28))
    #expect(index.metadata["total_parameters"] == .integer(7))
    let shardOne = try WeightFile.open(path: zero.folder + "/" + names[0])
    let shardTwo = try WeightFile.open(path: zero.folder + "/" + names[1])
    let first = TensorComparison.found(in: shardOne)
    let second = TensorComparison.found(in: shardTwo)
    #expect(Set(first.keys) == ["b"] && Set(second.keys) == ["a", "c"])
    #expect(try bytes(shardOne.source(for: try #require(first["b"]).view)) == ZeroFixture.f32([4, 5, 6, 7]))
    for name in ["a", "c"] {
      #expect(try bytes(shardTwo.source(for: try #require(second[name]).view)) == ZeroFixture.f32([1, 2, 3]))
    }
    // A limit that holds everything writes one file without an index.
    let big = try Consolidator.consolidate(
      folder: zero.folder, options: ConversionOptions(target: target, maxShardSize: 1 << 20))
    #expect(big.outputs.map { OutputFile.split($0.path).1 } == [Consolidator.outputName(target)])
  }

  @Test func refusesAMissingRankFile() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let zero = ZeroFixture(folder: try fixtures.folder("checkpoint-4"))
    try zero.writeZero2()
    try FileManager.default.removeItem(atPath: zero.folder + "/global_step4/zero_pp_rank_1_mp_rank_00_optim_states.pt")
    expectError("expected 2 *_optim_states.pt files", naming: "global_step4") {
      _ = try DistributedCheckpoint.read(folder: zero.folder)
    }
  }

  @Test func refusesPartitionsThatDoNotAddUp() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let zero = ZeroFixture(folder: try fixtures.folder("checkpoint-4"))
    try zero.writeZero2()
    try zero.modelStates(
      "global_step4/mp_rank_00_model_states.pt", shapes: [("a", [3]), ("b", [2, 3])], shared: [])
    expectError("param_shapes", naming: "mp_rank_00_model_states.pt") {
      _ = try DistributedCheckpoint.read(folder: zero.folder)
    }
  }

  @Test func refusesATruncatedRankFile() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let zero = ZeroFixture(folder: try fixtures.folder("checkpoint-4"))
    try zero.writeZero3()
    let victim = zero.folder + "/global_step4/zero_pp_rank_1_mp_rank_00_optim_states.pt"
    let data = try Data(contentsOf: URL(fileURLWithPath: victim))
    try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: victim))
    expectError("cut short", naming: "zero_pp_rank_1_mp_rank_00_optim_states.pt") {
      _ = try DistributedCheckpoint.read(folder: zero.folder)
    }
  }

  @Test func readinessWaitsForEveryRuleThenIsReady() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("checkpoint-4")
    #expect(DistributedCheckpoint.readiness(folder: folder, previous: nil).0 == .notDistributed)
    let zero = ZeroFixture(folder: folder)
    try zero.writeZero2()
    // `latest` written before the last rank: rank 1's optimizer file is not there yet.
    let rank1 = folder + "/global_step4/zero_pp_rank_1_mp_rank_00_optim_states.pt"
    let saved = try Data(contentsOf: URL(fileURLWithPath: rank1))
    try FileManager.default.removeItem(atPath: rank1)
    guard case .waiting(let reason) = DistributedCheckpoint.readiness(folder: folder, previous: nil).0 else {
      Issue.record("expected waiting")
      return
    }
    #expect(reason.contains("every rank's optimizer file"), "\(reason)")
    try saved.write(to: URL(fileURLWithPath: rank1))
    // A Trainer folder waits for trainer_state.json (ZeRO-3 writes global_stepN/ twice before it).
    try Data("x".utf8).write(to: URL(fileURLWithPath: folder + "/training_args.bin"))
    #expect(
      DistributedCheckpoint.readiness(folder: folder, previous: nil).0
        == .waiting("waiting for: trainer_state.json (the Trainer writes it after its last save pass)"))
    try Data("{}".utf8).write(to: URL(fileURLWithPath: folder + "/trainer_state.json"))
    let (first, snapshot) = DistributedCheckpoint.readiness(folder: folder, previous: nil)
    #expect(first == .waiting("waiting for: stable sizes of the rank files"))
    #expect(snapshot.sizes.count == 3)
    let (second, _) = DistributedCheckpoint.readiness(folder: folder, previous: snapshot)
    #expect(second == .ready(.zero(stage: 2)))
    // A size change (a rank rewriting its file) resets it.
    var changed = snapshot
    changed.sizes[rank1] = 1
    #expect(DistributedCheckpoint.readiness(folder: folder, previous: changed).0 != .ready(.zero(stage: 2)))
    // `latest` naming a tag that does not exist.
    try Data("global_step9".utf8).write(to: URL(fileURLWithPath: folder + "/latest"))
    #expect(
      DistributedCheckpoint.readiness(folder: folder, previous: snapshot).0
        == .waiting("waiting for: the tag folder 'latest' names"))
  }

  @Test func naturalOrderPutsRank10AfterRank9() {
    let names = (0..<12).map { "zero_pp_rank_\($0)_mp_rank_00_optim_states.pt" }
    #expect(names.shuffled().sorted(by: DistributedFolder.naturalLess) == names)
  }
}

extension DistributedTests {
  @Test func aStrayLatestFileIsNotACheckpoint() throws {
    let fixtures = try Fixtures()
    defer { fixtures.remove() }
    let folder = try fixtures.folder("runs")
    try Data("checkpoint-500".utf8).write(to: URL(fileURLWithPath: folder + "/latest"))
    #expect(DistributedCheckpoint.detect(folder: folder) == nil)
    #expect(try !Consolidator.shouldConsolidate(folder: folder, mode: .always))
    _ = try fixtures.folder("runs/checkpoint-500")
    #expect(DistributedCheckpoint.detect(folder: folder) == nil)
  }
}
