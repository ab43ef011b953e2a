import CheckpointFormats
import Clocks
import Foundation
import Synchronization
import Testing

@testable import CheckpointDaemon

/// The manifest lock: O_EXCL lock file, whole lines, fsync before release, stale only by observation.
@Suite struct ManifestLockTests {
  static let ttl = Duration.seconds(2)

  static func lines(_ path: String) -> [String] {
    let bytes = (try? Manifest.readWhole(path: path)) ?? nil
    return String(decoding: bytes ?? [], as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
      .map(String.init)
  }

  @Test func appendWritesWholeLinesAndRemovesTheLock() async throws {
    let dir = CoreTempDir()
    let manifest = dir.path + "/.ckptd-manifest.jsonl"
    try dir.write(".ckptd-manifest.jsonl", "{\"checkpoint\": \"checkpoint-1\"}\n{\"checkpoint\": \"chec")
    var lock = ManifestLock(
      manifestPath: manifest, identity: .current(node: "a"), ttl: Self.ttl, clock: TestClock())
    try await lock.append(line: Array("{\"checkpoint\": \"checkpoint-2\"}".utf8))
    #expect(
      Self.lines(manifest) == [
        "{\"checkpoint\": \"checkpoint-1\"}", "{\"checkpoint\": \"chec", "{\"checkpoint\": \"checkpoint-2\"}", "",
      ])
    #expect(ClaimBook.generations(in: dir.path, prefix: ManifestLock.prefix(for: manifest)) == [])
    #expect(ManifestLock.prefix(for: manifest) == ".ckptd-manifest.jsonl.lock.")
  }

  @Test func aLiveLockIsWaitedForAndAStaleOneTakenOver() async throws {
    let dir = CoreTempDir()
    let manifest = dir.path + "/m.jsonl"
    let clock = TestClock()
    let other = ClaimIdentity(node: "node-b", pid: 77, bootID: "another-boot", pidStart: "1")
    var holder = ManifestLock(manifestPath: manifest, identity: other, ttl: Self.ttl, clock: clock)
    var waiter = ManifestLock(manifestPath: manifest, identity: .current(node: "a"), ttl: Self.ttl, clock: clock)
    guard case .acquired(let held, _) = try holder.tryLock() else {
      Issue.record("no lock")
      return
    }
    #expect(held.path == dir.path + "/m.jsonl.lock.1")
    guard case .held(let seen) = try waiter.tryLock() else {
      Issue.record("a live lock was taken")
      return
    }
    #expect(seen.description == "node node-b pid 77")
    await clock.advance(by: Self.ttl - .milliseconds(1))
    if case .acquired = try waiter.tryLock() { Issue.record("taken before the TTL") }
    await clock.advance(by: .milliseconds(1))
    guard case .acquired(let taken, _) = try waiter.tryLock() else {
      Issue.record("a stale lock was not taken over")
      return
    }
    #expect(taken.generation == 2)
    #expect(!held.isCurrent())
  }

  @Test func withLockWaitsForTheHolderToRelease() async throws {
    let dir = CoreTempDir()
    let manifest = dir.path + "/m.jsonl"
    let clock = TestClock()
    let other = ClaimIdentity(node: "node-b", pid: 77, bootID: "another-boot", pidStart: "1")
    var holder = ManifestLock(manifestPath: manifest, identity: other, ttl: .seconds(3600), clock: clock)
    guard case .acquired(let held, _) = try holder.tryLock() else {
      Issue.record("no lock")
      return
    }
    let done = Mutexed(false)
    let waiter = Task {
      var lock = ManifestLock(manifestPath: manifest, identity: .current(node: "a"), ttl: .seconds(3600), clock: clock)
      try await lock.append(line: Array("after".utf8))
      done.withLock { $0 = true }
    }
    for _ in 0..<50 {
      await clock.advance(by: .milliseconds(20))
      await Task.yield()
    }
    #expect(!done.withLock { $0 })
    #expect(Self.lines(manifest) == [""])
    held.release()
    var rounds = 0
    while !done.withLock({ $0 }) && rounds < 100_000 {
      await clock.advance(by: .milliseconds(20))
      await Task.yield()
      rounds += 1
    }
    try await waiter.value
    #expect(Self.lines(manifest) == ["after", ""])
  }

  @Test func concurrentWritersNeverTearOrLoseALine() async throws {
    let dir = CoreTempDir()
    let manifest = dir.path + "/m.jsonl"
    let writers = 4
    let perWriter = 40
    DispatchQueue.concurrentPerform(iterations: writers) { writer in
      var lock = ManifestLock(
        manifestPath: manifest, identity: .current(node: "w\(writer)"), ttl: .seconds(3600),
        clock: ContinuousClock())
      var written = 0
      while written < perWriter {
        guard case .acquired(let held, _) = try? lock.tryLock() else { continue }
        let line = String(repeating: Character(String(writer)), count: 200) + " \(written)"
        try? ManifestLock.appendLocked(path: manifest, lines: Array(line.utf8) + [0x0A])
        held.release()
        written += 1
      }
    }
    let lines = Self.lines(manifest).dropLast()
    #expect(lines.count == writers * perWriter)
    for line in lines {
      let payload = line.prefix(200)
      #expect(Set(payload).count == 1, "torn line: \(line.prefix(40))")
    }
  }
}
