import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// Reads and failures counted across threads.
final class ReadCounts: @unchecked Sendable {
  private let lock = NSLock()
  private var storedReads = 0
  private var storedFailures = 0
  var reads: Int { lock.withLock { storedReads } }
  var failures: Int { lock.withLock { storedFailures } }
  func add(failed: Bool) {
    lock.withLock {
      storedReads += 1
      if failed { storedFailures += 1 }
    }
  }
}

@Suite struct StatusTests {
  static func sample(pid: Int32 = getpid(), updated: Date = Date(), directories: Int = 2) -> StatusSnapshot {
    let start = updated.addingTimeInterval(-3725)
    var snapshot = StatusSnapshot(pid: pid, version: "0.1.0", startedAt: start, updatedAt: updated, state: .running)
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
    let publisher = StatusPublisher(path: path, initial: Self.sample(directories: 200), minimumInterval: 0)
    publisher.flush()
    let counts = ReadCounts()
    let finished = DispatchSemaphore(value: 0)
    // A real thread, not a task: the poll loop must not starve the cooperative pool of other suites.
    let reader = Thread {
      while publisher.writes < 151 && counts.reads < 1_000_000 {
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
      publisher.flush()
    }
    finished.wait()
    #expect(counts.failures == 0)
    #expect(counts.reads > 10)
    #expect(try StatusFile.read(path: path).inotify.rescans == 149)
    // No temporaries left behind.
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["status.json"])
  }

  @Test func updatesAreCoalescedToTheRateLimit() throws {
    let dir = CoreTempDir()
    let path = dir.sub("status.json")
    let publisher = StatusPublisher(path: path, initial: Self.sample(), minimumInterval: 0.25)
    let clock = ContinuousClock()
    let start = clock.now
    var last = 0
    while clock.now - start < .milliseconds(600) {
      last += 1
      let value = last
      publisher.update { $0.inotify.watches = value }
      usleep(2000)
    }
    let elapsed = clock.now - start
    usleep(500_000)
    // At 4 writes/s: the first at once, then at most one per 0.25 s, plus the trailing one.
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let bound = Int(seconds / 0.25) + 2
    #expect(publisher.writes >= 2)
    #expect(publisher.writes <= bound, "\(publisher.writes) writes for \(last) updates in \(elapsed)")
    #expect(last > 20)
    // The last update is never lost.
    #expect(try StatusFile.read(path: path).inotify.watches == last)
  }

  @Test func flushWritesAtOnceAndSetsUpdatedAt() throws {
    let dir = CoreTempDir()
    let path = dir.sub("nested/dir/status.json")
    let old = Date(timeIntervalSinceNow: -1000)
    let publisher = StatusPublisher(path: path, initial: Self.sample(updated: old), minimumInterval: 10)
    publisher.flush()
    publisher.update { $0.state = .stopping }
    publisher.flush()
    let read = try StatusFile.read(path: path)
    #expect(read.state == .stopping)
    #expect(abs(read.updatedAt.timeIntervalSinceNow) < 5)
    #expect(publisher.writes == 2)
    #expect(publisher.lastError == nil)
  }

  @Test func publisherReportsWriteErrorsWithoutThrowing() {
    let publisher = StatusPublisher(path: "/proc/ckptd-cannot/status.json", initial: Self.sample())
    publisher.flush()
    #expect(publisher.lastError != nil)
    #expect(publisher.writes == 0)
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
