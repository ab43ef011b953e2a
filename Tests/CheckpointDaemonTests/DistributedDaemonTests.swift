import CheckpointConversion
import CheckpointFormats
import Clocks
import Foundation
import Testing

@testable import CheckpointDaemon

/// The daemon with distributed checkpoints: the `consolidate` key, readiness from
/// `DistributedCheckpoint.readiness` in the status file, and `source_kind` in the manifest. Conversions go
/// through the real `EngineConverter` on small ZeRO folders (`ZeroFixture`).
@Suite(.timeLimit(.minutes(1))) struct DistributedDaemonTests {
  static let base = "path = \"/a\"\nformat = \"safetensors\"\n"

  /// A fixture whose converter is the real engine.
  static func fixture(_ dropinExtra: String = "") throws -> DaemonFixture {
    let engine = EngineConverter()
    let converter = FakeConverter(
      .custom { folder in
        let watch = try ConfigLoader.parseDropin(
          text: "path = \"\(OutputFile.split(folder).0)\"\nformat = \"bin\"\n\(dropinExtra)", file: "/t/10-run.toml")
        return try engine.convert(folder: folder, watch: watch, isCancelled: { false }, progress: { _, _ in })
      })
    return try DaemonFixture(converter: converter, dropinExtra: dropinExtra)
  }

  static func pending(_ daemon: Daemon) async -> [PendingCheckpoint] {
    await daemon.status.directories.first?.pending ?? []
  }

  static func records(_ fixture: DaemonFixture, _ name: String) -> [ManifestRecord] {
    let manifest = Manifest(path: fixture.root + "/.ckptd-manifest.jsonl")
    return ((try? manifest.read()) ?? []).filter { $0.checkpoint == name }
  }

  @Test(arguments: [
    ("", ConsolidateMode.auto), ("consolidate = \"always\"", .always), ("consolidate = \"never\"", .never),
  ])
  func dropinKeyParses(line: String, mode: ConsolidateMode) throws {
    let watch = try ConfigLoader.parseDropin(text: Self.base + line, file: "/w/x.toml")
    #expect(watch.consolidate == mode)
    var config = try ConfigLoader.parseMain(text: "", path: "/x.toml")
    config.watches = [watch]
    #expect(ConfigReport.render(config).contains("consolidate = \(mode.rawValue)"))
  }

  @Test(arguments: [
    ("consolidate = \"sometimes\"", "consolidate must be \"auto\", \"always\" or \"never\", not \"sometimes\""),
    ("consolidate = true", "consolidate must be a string"),
  ])
  func aBadModeIsOneLineNamingTheDropinAndKey(line: String, expected: String) {
    let error = #expect(throws: CheckpointError.self) {
      try ConfigLoader.parseDropin(text: Self.base + line, file: "/w/x.toml")
    }
    #expect(error?.path == "/w/x.toml")
    #expect(error?.description.contains("\n") == false)
    #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
  }

  @Test func waitsForEveryRankThenConsolidatesAndRecordsTheSourceKind() async throws {
    let fixture = try Self.fixture()
    fixture.start()
    let folder = fixture.root + "/checkpoint-4"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let zero = ZeroFixture(folder: folder)
    try zero.writeZero3()
    // DeepSpeed writes `latest` before the last rank finishes: rank 1's optimizer file is not there yet.
    let rank1 = folder + "/global_step4/zero_pp_rank_1_mp_rank_00_optim_states.pt"
    let saved = try Data(contentsOf: URL(fileURLWithPath: rank1))
    try FileManager.default.removeItem(atPath: rank1)
    try "{}".write(toFile: folder + "/trainer_state.json", atomically: false, encoding: .utf8)
    #expect(
      await fixture.until { daemon in
        await Self.pending(daemon).first?.reason.contains("every rank's optimizer file in global_step4") == true
      })
    #expect(fixture.converter.callCount == 0)
    try saved.write(to: URL(fileURLWithPath: rank1))
    // The rank file lands in global_step4/, which raises no event on the checkpoint folder: the daemon finds
    // it at its next recheck. `until` returned without running the daemon's pending deadline, so run it.
    if let wake = await fixture.daemon.nextWake { await fixture.clock.advance(by: wake) }
    #expect(await fixture.until { _ in fixture.events("checkpoint-4") == [.converted] })
    await fixture.stop()
    let record = try #require(Self.records(fixture, "checkpoint-4").first)
    #expect(record.sourceKind == "deepspeed")
    #expect(record.outputs.map(\.name) == ["pytorch_model.bin"])
    #expect(record.tensors == 3 && record.verified)
    let written = try WeightFile.open(path: folder + "/pytorch_model.bin")
    let found = TensorComparison.found(in: written)
    #expect(Set(found.keys) == ["a", "b", "c"])
    // The rank files are untouched.
    #expect(try Data(contentsOf: URL(fileURLWithPath: rank1)) == saved)
  }

  @Test func aTrainerFolderWaitsForItsStateFileBeforeConsolidating() async throws {
    // Without a ready marker the distributed rules alone decide: a Trainer folder (training_args.bin)
    // waits for trainer_state.json, because ZeRO-3 writes global_stepN/ twice before it.
    let fixture = try Self.fixture("ready_marker = \"\"\nmax_shard_size = 12")
    fixture.start()
    let folder = fixture.root + "/checkpoint-4"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try ZeroFixture(folder: folder).writeZero3()
    try "x".write(toFile: folder + "/training_args.bin", atomically: false, encoding: .utf8)
    #expect(
      await fixture.until { daemon in
        await Self.pending(daemon).first?.reason
          == "waiting for: trainer_state.json (the Trainer writes it after its last save pass)"
      })
    #expect(fixture.converter.callCount == 0)
    try "{}".write(toFile: folder + "/trainer_state.json", atomically: false, encoding: .utf8)
    #expect(await fixture.until { _ in fixture.events("checkpoint-4") == [.converted] })
    await fixture.stop()
    let record = try #require(Self.records(fixture, "checkpoint-4").first)
    #expect(record.sourceKind == "deepspeed")
    // max_shard_size shards the consolidated model as it does a plain conversion.
    #expect(
      record.outputs.map(\.name) == [
        "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json",
      ])
  }

  @Test func neverLeavesADistributedFolderAlone() async throws {
    let fixture = try Self.fixture("consolidate = \"never\"")
    fixture.start()
    let folder = fixture.root + "/checkpoint-4"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try ZeroFixture(folder: folder).writeZero3()
    try "{}".write(toFile: folder + "/trainer_state.json", atomically: false, encoding: .utf8)
    #expect(await fixture.until { _ in fixture.events("checkpoint-4") == [.skipped] })
    await fixture.stop()
    #expect(Self.records(fixture, "checkpoint-4").first?.sourceKind == "weights")
    #expect(!FileManager.default.fileExists(atPath: folder + "/pytorch_model.bin"))
  }

  @Test func anOrdinaryConversionRecordsWeights() {
    #expect(EngineConverter.sourceKind(nil) == "weights")
    #expect(EngineConverter.sourceKind(.zero(stage: 3)) == "deepspeed")
    #expect(EngineConverter.sourceKind(.dcp) == "dcp")
  }
}
