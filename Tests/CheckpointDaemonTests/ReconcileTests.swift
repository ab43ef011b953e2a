import CheckpointFormats
import Foundation
import Synchronization
import Testing

@testable import CheckpointDaemon

@Suite struct ReconcileTests {
  @Test func removesOnlyOwnTemporaries() throws {
    let dir = try WatcherTempDir()
    defer { dir.cleanup() }
    try dir.file(OutputFile.temporaryPrefix + "pytorch_model.bin.x1y2")
    try dir.file(OutputFile.temporaryPrefix + "model.safetensors.zz")
    try dir.file("model.safetensors")
    try dir.file(".hidden")
    let removed = Reconcile.removeStaleTemporaries(in: dir.path)
    #expect(removed.count == 2)
    #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)) == ["model.safetensors", ".hidden"])
  }

  @Test func startupRemovesStaleTemporariesAndConvertsWhatAppeared() async throws {
    let fixture = try DaemonFixture()
    let done = try fixture.checkpoint("checkpoint-1")
    try "w".write(toFile: done + "/pytorch_model.bin", atomically: false, encoding: .utf8)
    try Manifest(path: fixture.root + "/.ckptd-manifest.jsonl").append(
      ManifestRecord(
        checkpoint: "checkpoint-1", event: .converted, format: "bin", dtype: "keep",
        outputs: [ManifestFile(name: "pytorch_model.bin", bytes: 1)], start: Date(), end: Date()))
    let fresh = try fixture.checkpoint("checkpoint-2")
    let stale = fresh + "/" + OutputFile.temporaryPrefix + "pytorch_model.bin.dead"
    try "half".write(toFile: stale, atomically: false, encoding: .utf8)
    fixture.start()
    #expect(await fixture.until { _ in fixture.events("checkpoint-2") == [.converted] })
    #expect(!FileManager.default.fileExists(atPath: stale))
    #expect(fixture.events("checkpoint-1") == [.converted])
    #expect(fixture.converter.calls.withLock { $0 } == [fresh])
    await fixture.stop()
  }

  @Test func doneNeedsTheOutputsInPlace() throws {
    let dir = try WatcherTempDir()
    defer { dir.cleanup() }
    let record = ManifestRecord(
      checkpoint: "c", event: .converted, format: "bin", dtype: "keep",
      outputs: [ManifestFile(name: "pytorch_model.bin", bytes: 1)], start: Date(), end: Date())
    #expect(!Reconcile.isDone(record, folder: dir.path))
    try dir.file("pytorch_model.bin")
    #expect(Reconcile.isDone(record, folder: dir.path))
    var failed = record
    failed.event = .failed
    #expect(!Reconcile.isDone(failed, folder: dir.path))
    #expect(!Reconcile.isDone(nil, folder: dir.path))
  }

  @Test func recordedFatalFailureAppliesUntilTheWeightsChange() throws {
    let old = Date().addingTimeInterval(-100)
    let record = ManifestRecord(
      checkpoint: "c", event: .failed, format: "bin", dtype: "keep", start: Date(), end: Date(), error: "bad",
      retryable: false)
    let unchanged = FolderSnapshot(files: ["model.safetensors": .init(size: 1, mtime: old.timeIntervalSince1970)])
    let changed = FolderSnapshot(files: ["model.safetensors": .init(size: 1, mtime: Date().timeIntervalSince1970 + 5)])
    #expect(Reconcile.failureStillApplies(record, snapshot: unchanged))
    #expect(!Reconcile.failureStillApplies(record, snapshot: changed))
    var retryable = record
    retryable.retryable = true
    #expect(!Reconcile.failureStillApplies(retryable, snapshot: unchanged))
  }
}
