import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointDaemon

@Suite struct TrackerTests {
  /// A structural check that says files containing "partial" are still being written.
  static let fakeCheck: @Sendable (String) throws -> Void = { path in
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    if text.contains("partial") { throw CheckpointError(.truncated, path: path, "cut short") }
  }

  func makeCheckpoint(_ files: [String: String]) throws -> (WatcherTempDir, String) {
    let dir = try WatcherTempDir()
    let folder = dir.path + "/checkpoint-10"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
    for (name, text) in files { try text.write(toFile: folder + "/" + name, atomically: false, encoding: .utf8) }
    return (dir, folder)
  }

  @Test func waitsForTheMarker() throws {
    let (dir, folder) = try makeCheckpoint(["model.safetensors": "weights"])
    defer { dir.cleanup() }
    var tracker = CheckpointTracker(rules: CompletionRules(settleSeconds: 1), structuralCheck: Self.fakeCheck)
    let now = Date().timeIntervalSince1970 + 100
    #expect(tracker.evaluate(folder, now: now) == .waiting("waiting for trainer_state.json"))
    try "{}".write(toFile: folder + "/trainer_state.json", atomically: false, encoding: .utf8)
    _ = tracker.evaluate(folder, now: now)
    #expect(tracker.evaluate(folder, now: now) == .ready)
  }

  @Test func settlesAfterTheLastChange() throws {
    let (dir, folder) = try makeCheckpoint(["model.safetensors": "weights", "trainer_state.json": "{}"])
    defer { dir.cleanup() }
    var tracker = CheckpointTracker(rules: CompletionRules(settleSeconds: 10), structuralCheck: Self.fakeCheck)
    let start = Date().timeIntervalSince1970 + 1
    tracker.noteChange(in: folder, now: start)
    #expect(tracker.evaluate(folder, now: start + 6) == .waiting("settling (4 s left)"))
    #expect(tracker.evaluate(folder, now: start + 10) == .ready)
    tracker.noteChange(in: folder, now: start + 11)
    #expect(tracker.evaluate(folder, now: start + 12) == .waiting("settling (9 s left)"))
  }

  /// A folder first seen counts as changed when it was seen: its old mtimes do not skip the settle time.
  @Test func trackingStartsTheSettleTime() throws {
    let (dir, folder) = try makeCheckpoint(["model.safetensors": "weights", "trainer_state.json": "{}"])
    defer { dir.cleanup() }
    var tracker = CheckpointTracker(rules: CompletionRules(settleSeconds: 10), structuralCheck: Self.fakeCheck)
    let seen = Date().timeIntervalSince1970 + 100
    tracker.track(folder, now: seen)
    #expect(tracker.evaluate(folder, now: seen + 4) == .waiting("settling (6 s left)"))
    #expect(tracker.recheck(folder) == .after(6))
    #expect(tracker.evaluate(folder, now: seen + 4) == .waiting("settling (6 s left)"))
    #expect(tracker.evaluate(folder, now: seen + 10) == .ready)
  }

  @Test func needsTwoScansWithTheSameSizes() throws {
    let (dir, folder) = try makeCheckpoint(["model.safetensors": "weights", "trainer_state.json": "{}"])
    defer { dir.cleanup() }
    var tracker = CheckpointTracker(rules: CompletionRules(settleSeconds: 0), structuralCheck: Self.fakeCheck)
    let now = Date().timeIntervalSince1970 + 100
    #expect(tracker.evaluate(folder, now: now) == .waiting("settling (checking that sizes are stable)"))
    #expect(tracker.recheck(folder) == .stability)
    try "more weights".write(toFile: folder + "/model.safetensors", atomically: false, encoding: .utf8)
    #expect(tracker.evaluate(folder, now: now) == .waiting("settling (checking that sizes are stable)"))
    #expect(tracker.evaluate(folder, now: now) == .ready)
  }

  @Test(arguments: ["model.safetensors", "pytorch_model.bin", "model-00001-of-00002.safetensors"])
  func incompleteWeightsWait(name: String) throws {
    let (dir, folder) = try makeCheckpoint([name: "partial", "trainer_state.json": "{}"])
    defer { dir.cleanup() }
    var tracker = CheckpointTracker(rules: CompletionRules(settleSeconds: 0), structuralCheck: Self.fakeCheck)
    let now = Date().timeIntervalSince1970 + 100
    _ = tracker.evaluate(folder, now: now)
    #expect(tracker.evaluate(folder, now: now) == .waiting("\(name) incomplete"))
  }

  @Test func optimizerStateIsNotAWeightFile() throws {
    let (dir, folder) = try makeCheckpoint([
      "model.safetensors": "ok", "optimizer.pt": "partial", "training_args.bin": "partial",
      "trainer_state.json": "{}",
    ])
    defer { dir.cleanup() }
    var tracker = CheckpointTracker(rules: CompletionRules(settleSeconds: 0), structuralCheck: Self.fakeCheck)
    let now = Date().timeIntervalSince1970 + 100
    _ = tracker.evaluate(folder, now: now)
    #expect(tracker.evaluate(folder, now: now) == .ready)
  }

  @Test func indexWaitsForEveryShard() throws {
    let index =
      #"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#
    let (dir, folder) = try makeCheckpoint([
      "model.safetensors.index.json": index, "model-00001-of-00002.safetensors": "ok", "trainer_state.json": "{}",
    ])
    defer { dir.cleanup() }
    var tracker = CheckpointTracker(rules: CompletionRules(settleSeconds: 0), structuralCheck: Self.fakeCheck)
    let now = Date().timeIntervalSince1970 + 100
    _ = tracker.evaluate(folder, now: now)
    #expect(
      tracker.evaluate(folder, now: now)
        == .waiting("waiting for model-00002-of-00002.safetensors (listed in model.safetensors.index.json)"))
    try "ok".write(toFile: folder + "/model-00002-of-00002.safetensors", atomically: false, encoding: .utf8)
    _ = tracker.evaluate(folder, now: now)
    #expect(tracker.evaluate(folder, now: now) == .ready)
  }

  @Test func ownTemporariesDoNotCount() throws {
    let (dir, folder) = try makeCheckpoint(["model.safetensors": "ok", "trainer_state.json": "{}"])
    defer { dir.cleanup() }
    let before = FolderSnapshot.take(folder)
    try "x".write(
      toFile: folder + "/" + OutputFile.temporaryPrefix + "pytorch_model.bin.abc", atomically: false, encoding: .utf8)
    #expect(FolderSnapshot.take(folder) == before)
  }

  @Test func dotNamesDoNotCountButADotMarkerDoes() throws {
    let (dir, folder) = try makeCheckpoint(["model.safetensors": "ok", ".done": "1"])
    defer { dir.cleanup() }
    let before = FolderSnapshot.take(folder)
    #expect(before?.files[".done"] == nil)
    for name in [".ckptd-claim.1", ".nfs000000000123", ".fuse_hidden0000002a00000001", ".ckptd-manifest.jsonl.lock.3"] {
      try "x".write(toFile: folder + "/" + name, atomically: false, encoding: .utf8)
    }
    #expect(FolderSnapshot.take(folder) == before)
    #expect(FolderSnapshot.take(folder, keep: ".done")?.files[".done"] != nil)
    var tracker = CheckpointTracker(
      rules: CompletionRules(readyMarker: ".done", settleSeconds: 0), structuralCheck: Self.fakeCheck)
    let now = Date().timeIntervalSince1970 + 100
    _ = tracker.evaluate(folder, now: now)
    #expect(tracker.evaluate(folder, now: now) == .ready)
  }

  @Test func goneFolder() throws {
    let (dir, folder) = try makeCheckpoint([:])
    var tracker = CheckpointTracker(rules: CompletionRules(), structuralCheck: Self.fakeCheck)
    dir.cleanup()
    #expect(tracker.evaluate(folder, now: 0) == .gone)
  }

  @Test(arguments: [
    ("checkpoint-500", true), ("checkpoint-", true), ("runs", false), (".checkpoint-1", false), ("checkpoint", false),
  ])
  func patternMatching(name: String, expected: Bool) {
    #expect(CompletionRules(pattern: "checkpoint-*").matches(name) == expected)
  }

  @Test func retryBookBacksOffAndHoldsFatalFailures() {
    var book = RetryBook()
    let full = CheckpointError(.io, path: "/x", "No space left on device", errno: ENOSPC)
    book.recordFailure("/r/checkpoint-1", fingerprint: "a", error: full, now: 0)
    #expect(book.hold("/r/checkpoint-1", fingerprint: "a", now: 4) != nil)
    #expect(book.hold("/r/checkpoint-1", fingerprint: "a", now: 5) == nil)
    book.recordFailure("/r/checkpoint-1", fingerprint: "a", error: full, now: 5)
    #expect(book.hold("/r/checkpoint-1", fingerprint: "a", now: 14) != nil)
    #expect(book.hold("/r/checkpoint-1", fingerprint: "a", now: 15) == nil)
    #expect(book.delay(afterAttempts: 20) == 300)
    let hostile = CheckpointError(.forbidden, path: "/x", "global os.system is not allowed")
    book.recordFailure("/r/checkpoint-2", fingerprint: "b", error: hostile, now: 0)
    #expect(book.hold("/r/checkpoint-2", fingerprint: "b", now: 10_000) != nil)
    #expect(book.hold("/r/checkpoint-2", fingerprint: "changed", now: 1) == nil)
  }
}
