import CheckpointFormats
import Foundation
import Synchronization
import Testing

@testable import CheckpointDaemon

@Suite(.timeLimit(.minutes(2))) struct DaemonTests {
  @Test func convertsAFinishedCheckpointAndRecordsIt() async throws {
    let fixture = try DaemonFixture()
    fixture.start()
    try fixture.checkpoint("checkpoint-1")
    #expect(await fixture.until { _ in fixture.events("checkpoint-1") == [.converted] })
    #expect(await fixture.until { await $0.status.directories.first?.counts["converted"] == 1 })
    let status = await fixture.daemon.status
    #expect(status.state == .running)
    #expect(status.directories.first?.state == .watching)
    #expect(status.inotify.watches >= 2)
    await fixture.stop()
    #expect(fixture.converter.calls.withLock { $0 } == [fixture.root + "/checkpoint-1"])
  }

  @Test func pendingCheckpointShowsWhyItWaits() async throws {
    let fixture = try DaemonFixture()
    fixture.start()
    try fixture.checkpoint("checkpoint-2", marker: false)
    #expect(
      await fixture.until {
        await $0.status.directories.first?.pending
          == [PendingCheckpoint(name: "checkpoint-2", reason: "waiting for trainer_state.json")]
      })
    try "{}".write(toFile: fixture.root + "/checkpoint-2/trainer_state.json", atomically: false, encoding: .utf8)
    #expect(await fixture.until { _ in fixture.events("checkpoint-2") == [.converted] })
    await fixture.stop()
  }

  @Test func speaksToSystemd() async throws {
    let dir = try WatcherTempDir()
    defer { dir.cleanup() }
    let listener = NotifyListener(directory: dir.path)
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "200000"])
    let fixture = try DaemonFixture(notifier: notifier)
    fixture.start()
    #expect(await fixture.until { _ in listener.lines.contains("READY=1") })
    #expect(await fixture.until { _ in listener.lines.contains { $0.hasPrefix("STATUS=watching 1/1 dirs") } })
    #expect(await fixture.until { _ in listener.lines.filter { $0 == "WATCHDOG=1" }.count >= 3 })
    fixture.daemon.reload()
    #expect(await fixture.until { _ in listener.lines.contains("RELOADING=1") })
    await fixture.stop()
    #expect(listener.lines.contains("STOPPING=1"))
  }

  @Test func watchdogIsTheOnlyDeadlineOfAnIdleDaemon() async throws {
    let quiet = try DaemonFixture()
    quiet.start()
    await quiet.settle()
    #expect(await quiet.daemon.nextWake == nil)
    await quiet.stop()

    let notifier = SystemdNotifier(environment: [
      "NOTIFY_SOCKET": "/nonexistent/ckptd.sock", "WATCHDOG_USEC": "4000000",
    ])
    let watched = try DaemonFixture(notifier: notifier)
    watched.start()
    #expect(await watched.until { await $0.status.state == .running })
    // Half the watchdog interval, and nothing sooner once the start-up status is written. (Within a nanosecond:
    // the fixture moves the test clock 1 ns past each deadline, and whether the daemon reads the clock before or
    // after that last nanosecond is up to the test clock's scheduling.)
    #expect(
      await watched.until { daemon in
        guard let wake = await daemon.nextWake else { return false }
        return wake >= .seconds(2) - .nanoseconds(1) && wake <= .seconds(2)
      })
    #expect(await watched.daemon.status.heartbeatSeconds == 2)
    await watched.stop()
  }

  @Test func fatalFailureWaitsForTheFilesToChange() async throws {
    let converter = FakeConverter(.fail(CheckpointError(.forbidden, path: "x", "global os.system refused")))
    let fixture = try DaemonFixture(converter: converter)
    fixture.start()
    let folder = try fixture.checkpoint("checkpoint-3")
    #expect(await fixture.until { _ in fixture.events("checkpoint-3") == [.failed] })
    await fixture.settle()
    // Nothing scheduled: only a change of its files brings it back.
    #expect(await fixture.daemon.nextWake == nil)
    #expect(converter.callCount == 1)
    #expect(
      await fixture.daemon.status.directories.first?.pending.first?.reason.hasPrefix("failed, not retried") == true)
    converter.behaviour.withLock { $0 = .succeed }
    try "changed weights".write(toFile: folder + "/model.safetensors", atomically: false, encoding: .utf8)
    #expect(await fixture.until { _ in fixture.events("checkpoint-3") == [.failed, .converted] })
    await fixture.stop()
  }

  @Test func retryableFailureComesBackAfterTheBackoffOnTheClock() async throws {
    let converter = FakeConverter(.fail(CheckpointError(.io, path: "x", "disk full", errno: ENOSPC)))
    let fixture = try DaemonFixture(converter: converter)
    fixture.start()
    try fixture.checkpoint("checkpoint-9")
    #expect(await fixture.until { _ in fixture.events("checkpoint-9") == [.failed] })
    #expect(
      await fixture.until { daemon in
        let pending = await daemon.status.directories.first?.pending ?? []
        return await daemon.nextWake != nil && !pending.isEmpty
      })
    let reason = await fixture.daemon.status.directories.first?.pending.first?.reason ?? ""
    #expect(reason.hasPrefix("failed, retrying in 5 s"), "\(reason)")
    converter.behaviour.withLock { $0 = .succeed }
    let advanced = await fixture.settle()
    #expect(fixture.events("checkpoint-9") == [.failed, .converted])
    #expect(advanced >= .seconds(5))
    await fixture.stop()
  }

  @Test func stopAbandonsTheRunningConversion() async throws {
    let converter = FakeConverter(.blockUntilReleased)
    let fixture = try DaemonFixture(converter: converter)
    fixture.start()
    let folder = try fixture.checkpoint("checkpoint-4")
    #expect(await fixture.until { await $0.status.active.first?.checkpoint == "checkpoint-4" })
    fixture.daemon.stop()
    #expect(await fixture.until { await $0.status.state == .stopping })
    converter.release()
    await fixture.stop()
    #expect(fixture.events("checkpoint-4").isEmpty)
    let left = try FileManager.default.contentsOfDirectory(atPath: folder)
    #expect(!left.contains { $0.hasPrefix(OutputFile.temporaryPrefix) })
    #expect(await fixture.daemon.status.state == .stopping)
  }

  @Test func rescanFindsWhatTheEventsMissed() async throws {
    let fixture = try DaemonFixture()
    fixture.start()
    #expect(await fixture.until { await $0.status.state == .running })
    let daemon = fixture.daemon
    // Lose the root's watch: events for new folders go nowhere, as after a queue overflow.
    await daemon.loseWatch(of: fixture.root)
    let folder = try fixture.checkpoint("checkpoint-5")
    await fixture.settle()
    // Only a rescan can find it (another suite's real overflow would be one): no tick, no poll.
    let seen = await daemon.probe(folder)
    if seen.rescans == 0 {
      #expect(!seen.tracked)
      #expect(fixture.events("checkpoint-5").isEmpty)
    }
    daemon.rescan(reason: "test")
    #expect(await fixture.until { _ in fixture.events("checkpoint-5") == [.converted] })
    #expect(await daemon.status.inotify.rescans >= 1)
    await fixture.stop()
  }

  @Test func missingRootIsPickedUpWhenItAppears() async throws {
    let fixture = try DaemonFixture(createRoot: false, root: "a/b/run")
    fixture.start()
    #expect(await fixture.until { await $0.status.directories.first?.state == .missing })
    // Its parents appear one by one: each is watched in turn, nothing is polled.
    try FileManager.default.createDirectory(atPath: fixture.base.path + "/a", withIntermediateDirectories: false)
    try FileManager.default.createDirectory(atPath: fixture.base.path + "/a/b", withIntermediateDirectories: false)
    try fixture.checkpoint("checkpoint-6")
    #expect(await fixture.until { _ in fixture.events("checkpoint-6") == [.converted] })
    try FileManager.default.removeItem(atPath: fixture.root)
    #expect(await fixture.until { await $0.status.directories.first?.state == .missing })
    try fixture.checkpoint("checkpoint-7")
    #expect(await fixture.until { _ in fixture.events("checkpoint-7") == [.converted] })
    await fixture.stop()
  }

  @Test func dropinAddedWhileRunningIsWatched() async throws {
    let fixture = try DaemonFixture()
    fixture.start()
    #expect(await fixture.until { await $0.status.state == .running })
    let other = fixture.base.path + "/other"
    try fixture.checkpoint("checkpoint-8", in: other)
    try "path = \"\(other)\"\nformat = \"bin\"\nsettle_seconds = 0\n".write(
      toFile: fixture.base.path + "/watch.d/20-other.toml", atomically: false, encoding: .utf8)
    #expect(await fixture.until { await $0.status.directories.count == 2 })
    #expect(await fixture.until { _ in fixture.events("checkpoint-8", in: other) == [.converted] })
    await fixture.stop()
  }

  @Test func dropinDirectoryCreatedLaterIsWatchedThroughItsParent() async throws {
    let late = NSTemporaryDirectory() + "ckptd-late-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: late) }
    let fixture = try DaemonFixture(extraDropinDirs: [late + "/conf/watch.d"])
    fixture.start()
    #expect(await fixture.until { await $0.status.state == .running })
    await fixture.settle()
    #expect(await fixture.daemon.nextWake == nil)
    let other = fixture.base.path + "/late-run"
    try fixture.checkpoint("checkpoint-11", in: other)
    try FileManager.default.createDirectory(atPath: late + "/conf/watch.d", withIntermediateDirectories: true)
    try "path = \"\(other)\"\nformat = \"bin\"\nsettle_seconds = 0\n".write(
      toFile: late + "/conf/watch.d/30-late.toml", atomically: false, encoding: .utf8)
    #expect(await fixture.until { _ in fixture.events("checkpoint-11", in: other) == [.converted] })
    await fixture.stop()
  }

  @Test func severalWorkersAppendThroughOneWriter() async throws {
    let fixture = try DaemonFixture(workers: 3)
    for index in 0..<9 { try fixture.checkpoint("checkpoint-\(100 + index)") }
    fixture.start()
    #expect(await fixture.until { await $0.status.directories.first?.counts["converted"] == 9 })
    let contents = try Manifest(path: fixture.root + "/.ckptd-manifest.jsonl").readAll()
    #expect(contents.records.count == 9)
    #expect(contents.damagedLines.isEmpty && !contents.tornTail)
    await fixture.stop()
  }

  @Test func vanishedFolderOfAReCreatedRootIsNotRecordedThere() async throws {
    let converter = FakeConverter(
      .custom { folder in
        // The root goes away (renamed aside: one step that cannot half-fail) and a new one takes its place.
        let root = (folder as NSString).deletingLastPathComponent
        try FileManager.default.moveItem(atPath: root, toPath: root + ".old")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        throw CheckpointError(.vanished, path: folder, "folder removed while being read")
      })
    let fixture = try DaemonFixture(converter: converter)
    fixture.start()
    try fixture.checkpoint("checkpoint-12")
    #expect(await fixture.until { _ in converter.callCount == 1 })
    try fixture.checkpoint("checkpoint-13")
    converter.behaviour.withLock { $0 = .succeed }
    #expect(await fixture.until { _ in fixture.events("checkpoint-13") == [.converted] })
    #expect(fixture.events("checkpoint-12").isEmpty)
    await fixture.stop()
  }

  @Test func failedManifestAppendIsShownInTheStatus() async throws {
    let fixture = try DaemonFixture()
    // A directory where the manifest should be: every append fails.
    try FileManager.default.createDirectory(
      atPath: fixture.root + "/.ckptd-manifest.jsonl", withIntermediateDirectories: false)
    fixture.start()
    try fixture.checkpoint("checkpoint-14")
    #expect(
      await fixture.until {
        await $0.status.directories.first?.lastError?.contains("cannot record converted checkpoint-14") == true
      })
    await fixture.settle()
    let written = try StatusFile.read(path: fixture.base.path + "/status.json")
    #expect(written.directories.first?.lastError?.contains(".ckptd-manifest.jsonl") == true)
    await fixture.stop()
  }
}
