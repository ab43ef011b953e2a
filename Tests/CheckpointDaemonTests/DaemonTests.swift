import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointDaemon

@Suite struct DaemonTests {
  @Test func convertsAFinishedCheckpointAndRecordsIt() async throws {
    let fixture = try DaemonFixture()
    fixture.start()
    try fixture.checkpoint("checkpoint-1")
    #expect(await eventually { fixture.events("checkpoint-1") == [.converted] })
    #expect(await eventually { fixture.daemon.status.directories.first?.counts["converted"] == 1 })
    let status = fixture.daemon.status
    #expect(status.state == .running)
    #expect(status.directories.first?.state == .watching)
    #expect(status.inotify.watches >= 2)
    await fixture.stop()
    #expect(fixture.converter.calls.current == [fixture.root + "/checkpoint-1"])
  }

  @Test func pendingCheckpointShowsWhyItWaits() async throws {
    let fixture = try DaemonFixture()
    fixture.start()
    try fixture.checkpoint("checkpoint-2", marker: false)
    #expect(
      await eventually {
        fixture.daemon.status.directories.first?.pending
          == [PendingCheckpoint(name: "checkpoint-2", reason: "waiting for trainer_state.json")]
      })
    try "{}".write(toFile: fixture.root + "/checkpoint-2/trainer_state.json", atomically: false, encoding: .utf8)
    #expect(await eventually { fixture.events("checkpoint-2") == [.converted] })
    await fixture.stop()
  }

  @Test func speaksToSystemd() async throws {
    let dir = try WatcherTempDir()
    defer { dir.cleanup() }
    let listener = NotifyListener(directory: dir.path)
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "200000"])
    let fixture = try DaemonFixture(notifier: notifier)
    fixture.start()
    #expect(await eventually { listener.lines.contains("READY=1") })
    #expect(await eventually { listener.lines.contains { $0.hasPrefix("STATUS=watching 1/1 dirs") } })
    #expect(await eventually { listener.lines.filter { $0 == "WATCHDOG=1" }.count >= 2 })
    fixture.daemon.reload()
    #expect(await eventually { listener.lines.contains("RELOADING=1") })
    await fixture.stop()
    #expect(listener.lines.contains("STOPPING=1"))
  }

  @Test func fatalFailureWaitsForTheFilesToChange() async throws {
    let converter = FakeConverter(.fail(CheckpointError(.forbidden, path: "x", "global os.system refused")))
    let fixture = try DaemonFixture(converter: converter)
    fixture.start()
    let folder = try fixture.checkpoint("checkpoint-3")
    #expect(await eventually { fixture.events("checkpoint-3") == [.failed] })
    try await Task.sleep(for: .milliseconds(500))
    #expect(converter.calls.current.count == 1)
    #expect(
      fixture.daemon.status.directories.first?.pending.first?.reason.hasPrefix("failed, not retried") == true)
    converter.behaviour.withLock { $0 = .succeed }
    try "changed weights".write(toFile: folder + "/model.safetensors", atomically: false, encoding: .utf8)
    #expect(await eventually { fixture.events("checkpoint-3") == [.failed, .converted] })
    await fixture.stop()
  }

  @Test func stopAbandonsTheRunningConversion() async throws {
    let fixture = try DaemonFixture(converter: FakeConverter(.blockUntilCancelled))
    fixture.start()
    let folder = try fixture.checkpoint("checkpoint-4")
    #expect(await eventually { fixture.daemon.status.active.first?.checkpoint == "checkpoint-4" })
    await fixture.stop()
    #expect(fixture.events("checkpoint-4").isEmpty)
    let left = try FileManager.default.contentsOfDirectory(atPath: folder)
    #expect(!left.contains { $0.hasPrefix(OutputFile.temporaryPrefix) })
    #expect(fixture.daemon.status.state == .stopping)
  }

  @Test func rescanFindsWhatTheEventsMissed() async throws {
    let fixture = try DaemonFixture()
    fixture.start()
    #expect(await eventually { fixture.daemon.status.state == .running })
    let daemon = fixture.daemon
    let root = fixture.root
    // Lose the root's watch: events for new folders go nowhere, as after a queue overflow.
    daemon.inspect {
      daemon.lastPresenceCheck = .infinity
      daemon.registry.release(.root(root), watcher: daemon.watcher)
    }
    try fixture.checkpoint("checkpoint-5")
    try await Task.sleep(for: .milliseconds(400))
    #expect(fixture.events("checkpoint-5").isEmpty)
    daemon.inspect { daemon.handle(.rescan(reason: "test")) }
    #expect(await eventually { fixture.events("checkpoint-5") == [.converted] })
    #expect(daemon.status.inotify.rescans >= 1)
    await fixture.stop()
  }

  @Test func missingRootIsPickedUpWhenItAppears() async throws {
    let fixture = try DaemonFixture(createRoot: false)
    fixture.start()
    #expect(await eventually { fixture.daemon.status.directories.first?.state == .missing })
    try fixture.checkpoint("checkpoint-6")
    #expect(await eventually { fixture.events("checkpoint-6") == [.converted] })
    try FileManager.default.removeItem(atPath: fixture.root)
    #expect(await eventually(timeout: 20) { fixture.daemon.status.directories.first?.state == .missing })
    try fixture.checkpoint("checkpoint-7")
    #expect(await eventually { fixture.events("checkpoint-7") == [.converted] })
    await fixture.stop()
  }

  @Test func dropinAddedWhileRunningIsWatched() async throws {
    let fixture = try DaemonFixture()
    fixture.start()
    #expect(await eventually { fixture.daemon.status.state == .running })
    let other = fixture.base.path + "/other"
    try FileManager.default.createDirectory(atPath: other + "/checkpoint-8", withIntermediateDirectories: true)
    try "ok".write(toFile: other + "/checkpoint-8/model.safetensors", atomically: false, encoding: .utf8)
    try "{}".write(toFile: other + "/checkpoint-8/trainer_state.json", atomically: false, encoding: .utf8)
    try "path = \"\(other)\"\nformat = \"bin\"\nsettle_seconds = 0\n".write(
      toFile: fixture.base.path + "/watch.d/20-other.toml", atomically: false, encoding: .utf8)
    #expect(await eventually { fixture.daemon.status.directories.count == 2 })
    #expect(await eventually { FileManager.default.fileExists(atPath: other + "/checkpoint-8/pytorch_model.bin") })
    await fixture.stop()
  }
}
