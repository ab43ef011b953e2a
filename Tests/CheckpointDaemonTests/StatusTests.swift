import CheckpointFormats
import Foundation
import Synchronization
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// Reads and failures counted across threads, and the writer's "done".
final class ReadCounts: Sendable {
  private let counts = Mutexed((reads: 0, failures: 0, done: false))
  var reads: Int { counts.withLock { $0.reads } }
  var failures: Int { counts.withLock { $0.failures } }
  var done: Bool { counts.withLock { $0.done } }
  func finish() { counts.withLock { $0.done = true } }
  func add(failed: Bool) {
    counts.withLock {
      $0.reads += 1
      if failed { $0.failures += 1 }
    }
  }
}

@Suite struct StatusTests {
  static func sample(
    pid: Int32 = getpid(), updated: Date = Date(), directories: Int = 2, heartbeat: Double? = 10
  ) -> StatusSnapshot {
    let start = updated.addingTimeInterval(-3725)
    var snapshot = StatusSnapshot(
      pid: pid, version: "0.1.0", startedAt: start, updatedAt: updated, state: .running, heartbeatSeconds: heartbeat)
    for index in 0..<directories {
      snapshot.directories.append(
        DirectoryStatus(
          path: "/data/runs/run\(index)", format: "safetensors", dtype: "keep", state: .watching,
          counts: ["converted": 12 + index, "failed": 1, "skipped": 0, "vanished": 2],
          pending: [PendingCheckpoint(name: "checkpoint-\(index)00", reason: "waiting for trainer_state.json")],
          lastError: index == 0 ? "checkpoint-7/pytorch_model.bin: disk full" : nil))
    }
    snapshot.active = [
      ActiveConversion(
        directory: "/data/runs/run0", checkpoint: "checkpoint-500", bytesDone: 512 << 20, bytesTotal: 2048 << 20,
        startedAt: updated.addingTimeInterval(-4))
    ]
    snapshot.inotify = InotifyStatus(watches: 5, overflows: 1, rescans: 3)
    snapshot.problems = [DropinProblem(file: "/etc/ckptd/watch.d/20-x.toml", message: "path is required")]
    return snapshot
  }

  @Test func documentRoundTripsWithSnakeCaseKeys() throws {
    let dir = CoreTempDir()
    let path = dir.sub("run/ckptd/status.json")
    let snapshot = Self.sample(updated: Date(timeIntervalSince1970: 1_800_000_000.5))
    try StatusFile.write(snapshot, to: path)
    #expect(try StatusFile.read(path: path) == snapshot)
    let text = try String(contentsOfFile: path, encoding: .utf8)
    for key in [
      "\"schema_version\" : 1", "\"started_at\"", "\"updated_at\" : \"2027-01-15T08:00:00.500Z\"", "\"bytes_done\"",
      "\"bytes_total\"", "\"last_error\"", "\"overflows\"", "\"rescans\"", "\"problems\"", "\"state\" : \"running\"",
    ] {
      #expect(text.contains(key), "missing \(key)")
    }
    var mode = stat()
    #expect(stat(path, &mode) == 0)
    #expect(mode.st_mode & 0o777 == 0o644)
  }

  @Test func readingGarbageOrNothingThrows() throws {
    let dir = CoreTempDir()
    let missing = #expect(throws: CheckpointError.self) { try StatusFile.read(path: dir.sub("none.json")) }
    #expect(missing?.errno == ENOENT)
    let file = try dir.write("bad.json", "{\"schema_version\": 1, \"pid\": ")
    let bad = #expect(throws: CheckpointError.self) { try StatusFile.read(path: file) }
    #expect(bad?.code == .invalidFormat)
  }

  /// A reader polling the file while the publisher rewrites it must always decode a whole document.
  @Test func readerNeverSeesPartialDocument() throws {
    let dir = CoreTempDir()
    let path = dir.sub("status.json")
    var publisher = StatusPublisher(path: path, initial: Self.sample(directories: 200), minimumInterval: .zero)
    publisher.flush(now: .zero, wallTime: Date())
    let counts = ReadCounts()
    let finished = DispatchSemaphore(value: 0)
    // A real thread, not a task: the read loop must not starve the cooperative pool of other suites.
    let reader = Thread {
      while !counts.done && counts.reads < 1_000_000 {
        do {
          _ = try StatusFile.read(path: path)
          counts.add(failed: false)
        } catch {
          counts.add(failed: true)
        }
      }
      finished.signal()
    }
    reader.start()
    for round in 0..<150 {
      publisher.update { $0.inotify.rescans = round }
      publisher.flush(now: .seconds(round), wallTime: Date())
    }
    counts.finish()
    finished.wait()
    #expect(counts.failures == 0)
    #expect(counts.reads > 0)
    #expect(try StatusFile.read(path: path).inotify.rescans == 149)
    // No temporaries left behind.
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["status.json"])
  }

  @Test func updatesAreCoalescedToTheRateLimit() throws {
    let dir = CoreTempDir()
    let path = dir.sub("status.json")
    var publisher = StatusPublisher(path: path, initial: Self.sample(), minimumInterval: .milliseconds(250))
    // 600 updates, one every millisecond of clock time: the first is written at once, then one per 0.25 s.
    for step in 0..<600 {
      let now = Duration.milliseconds(step)
      publisher.update { $0.inotify.watches = step }
      publisher.publish(now: now, wallTime: Date())
    }
    #expect(publisher.writes == 3)
    #expect(publisher.isDirty)
    #expect(publisher.nextWrite == .milliseconds(750))
    // Not before its time; then the last update is written, never lost.
    publisher.publish(now: .milliseconds(749), wallTime: Date())
    #expect(publisher.writes == 3)
    publisher.publish(now: .milliseconds(750), wallTime: Date())
    #expect(publisher.writes == 4)
    #expect(publisher.nextWrite == nil)
    #expect(try StatusFile.read(path: path).inotify.watches == 599)
    // An unchanged document is not written again.
    publisher.update { $0.inotify.watches = 599 }
    #expect(publisher.nextWrite == nil)
  }

  @Test func flushWritesAtOnceAndSetsUpdatedAt() throws {
    let dir = CoreTempDir()
    let path = dir.sub("nested/dir/status.json")
    let old = Date(timeIntervalSinceNow: -1000)
    var publisher = StatusPublisher(
      path: path, initial: Self.sample(updated: old), minimumInterval: .seconds(10))
    let wall = Date(timeIntervalSince1970: 1_900_000_000)
    publisher.flush(now: .zero, wallTime: wall)
    publisher.update { $0.state = .stopping }
    publisher.flush(now: .seconds(1), wallTime: wall)
    let read = try StatusFile.read(path: path)
    #expect(read.state == .stopping)
    #expect(read.updatedAt == wall)
    #expect(publisher.writes == 2)
    #expect(publisher.lastError == nil)
  }

  @Test func failedWriteIsShownInTheNextDocument() throws {
    let dir = CoreTempDir()
    let blocked = dir.sub("blocked")
    try "not a folder".write(toFile: blocked, atomically: false, encoding: .utf8)
    var publisher = StatusPublisher(path: blocked + "/status.json", initial: Self.sample())
    let error = publisher.flush(now: .zero, wallTime: Date())
    #expect(error != nil)
    #expect(publisher.lastError != nil)
    #expect(publisher.writes == 0)
    #expect(publisher.snapshot.statusWriteError?.contains(blocked) == true)
    // A failed write is retried after `retryInterval`, not at once (no spinning on a broken folder).
    #expect(publisher.nextWrite == .seconds(5))
    try FileManager.default.removeItem(atPath: blocked)
    publisher.publish(now: .seconds(5), wallTime: Date())
    #expect(publisher.writes == 1)
    let written = try StatusFile.read(path: blocked + "/status.json")
    #expect(written.statusWriteError?.contains("cannot create the status folder") == true)
    #expect(publisher.snapshot.statusWriteError == nil)
  }

  /// The temporary's descriptor is closed once: a failed rename must not close a descriptor someone else
  /// opened meanwhile. The kernel hands out the lowest free numbers, so the rename hook, by taking the 64
  /// lowest, takes the one the writer just freed.
  @Test func failedRenameClosesTheTemporaryOnce() throws {
    let dir = CoreTempDir()
    let path = dir.sub("status.json")
    let taken = Mutexed<[Int32]>([])
    let failing: @Sendable (String, String) -> Int32 = { _, _ in
      taken.withLock { fds in
        for _ in 0..<64 { fds.append(open("/dev/null", O_RDONLY | O_CLOEXEC)) }
      }
      errno = EXDEV
      return -1
    }
    #expect(throws: CheckpointError.self) { try StatusFile.write(Self.sample(), to: path, rename: failing) }
    let fds = taken.withLock { $0 }
    #expect(fds.count == 64 && fds.allSatisfy { $0 >= 0 })
    let closed = fds.filter { fcntl($0, F_GETFD) == -1 }
    #expect(closed.isEmpty, "descriptors opened during the rename were closed by the status writer: \(closed)")
    for fd in fds where !closed.contains(fd) { close(fd) }
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
  }

  @Test func healthFlagsDeadPidAndStaleness() {
    let now = Date()
    #expect(StatusHealth.problem(with: Self.sample(updated: now), now: now) == nil)
    let stale = StatusHealth.problem(with: Self.sample(updated: now.addingTimeInterval(-61)), now: now)
    #expect(stale?.contains("stale") == true)
    let dead = StatusHealth.problem(with: Self.sample(pid: Int32.max, updated: now), now: now)
    #expect(dead?.contains("not running") == true)
    #expect(StatusHealth.processIsAlive(getpid()))
    #expect(!StatusHealth.processIsAlive(Int32.max))
    #expect(!StatusHealth.processIsAlive(0))
    // Without a watchdog an idle daemon does not rewrite the file: its age says nothing, the pid does.
    let quiet = Self.sample(updated: now.addingTimeInterval(-3600), heartbeat: nil)
    #expect(StatusHealth.problem(with: quiet, now: now) == nil)
    #expect(StatusHealth.problem(with: Self.sample(pid: Int32.max, heartbeat: nil), now: now) != nil)
  }

  @Test func tableShowsWhatAPersonNeeds() {
    let now = Date()
    let table = StatusRenderer.render(Self.sample(updated: now), now: now)
    #expect(table.contains("running"))
    #expect(table.contains("up 1h 02m"))
    #expect(table.contains("DIRECTORY"))
    #expect(table.contains("/data/runs/run1"))
    #expect(table.contains("/data/runs/run0/checkpoint-000  waiting for trainer_state.json"))
    #expect(table.contains("/data/runs/run0/checkpoint-500  25%  512.0 MiB of 2.0 GiB  128.0 MiB/s"))
    #expect(table.contains("disk full"))
    #expect(table.contains("/etc/ckptd/watch.d/20-x.toml: path is required"))
    let summary = Self.sample(updated: now).summaryLine
    #expect(summary.contains("watching 2/2 dirs"))
    #expect(summary.contains("25 converted"))
    #expect(summary.contains("converting checkpoint-500 25%"))
  }

  @Test func watchModeAndLastPollAreShownAndRoundTrip() throws {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    var polled = DirectoryStatus(path: "/shared/run", format: "bin", dtype: "keep")
    polled.fileSystem = WatchedFileSystem(
      type: "fuse.juicefs", magic: "0x65735546", mode: "poll", pollSeconds: 0.5,
      reason: "fuse.juicefs is a FUSE mount")
    polled.lastPoll = PollFigures(at: now.addingTimeInterval(-3), seconds: 0.0021)
    var local = DirectoryStatus(path: "/data/run", format: "bin", dtype: "keep")
    local.fileSystem = WatchedFileSystem(
      type: "ext4", magic: "0xef53", mode: "inotify", pollSeconds: nil, reason: "ext4 is a local file system")
    var snapshot = StatusSnapshot(pid: 1, version: "x", startedAt: now)
    snapshot.directories = [local, polled]
    let table = StatusRenderer.render(snapshot, now: now)
    #expect(
      table.contains(
        "/shared/run  fuse.juicefs, inotify + poll every 0.5 s (fuse.juicefs is a FUSE mount); last poll 3s ago, 2.1 ms"
      ))
    #expect(table.contains("/data/run  ext4, inotify (ext4 is a local file system)"))
    let decoded = try JSONDecoder().decode(StatusSnapshot.self, from: Data(try StatusFile.encode(snapshot)))
    #expect(decoded.directories == snapshot.directories)
    let text = String(decoding: try StatusFile.encode(snapshot), as: UTF8.self)
    #expect(text.contains("\"file_system\""))
    #expect(text.contains("\"last_poll\""))
    #expect(text.contains("\"poll_seconds\" : 0.5"))
  }

  @Test(arguments: [(0.0, "0s"), (59.9, "59s"), (61, "1m 01s"), (3725, "1h 02m"), (90_000, "1d 01h")])
  func durations(seconds: Double, text: String) {
    #expect(StatusRenderer.duration(seconds) == text)
  }
}

@Suite struct StatusUpdateTests {
  @Test func countsAndReloadKeepHistory() {
    var snapshot = StatusSnapshot(pid: 1, version: "x")
    let a = WatchConfig(path: "/a", format: .safetensors, dtype: .f16)
    let b = WatchConfig(path: "/b", format: .torch)
    snapshot.setDirectories([a])
    snapshot.count(.converted, in: "/a")
    snapshot.count(.converted, in: "/a")
    snapshot.count(.failed, in: "/a")
    snapshot.count(.converted, in: "/nowhere")
    #expect(
      snapshot.directories == [
        DirectoryStatus(path: "/a", format: "safetensors", dtype: "f16", counts: ["converted": 2, "failed": 1])
      ])
    snapshot.setDirectories([b, a])
    #expect(snapshot.directories.map(\.path) == ["/b", "/a"])
    #expect(snapshot.directories[0].format == "bin")
    #expect(snapshot.directories[1].counts["converted"] == 2)
  }
}
