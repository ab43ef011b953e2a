import CheckpointFormats
import Clocks
import Foundation
import Synchronization
import Testing

@testable import CheckpointDaemon

/// Claims on checkpoint folders: exclusive creation, staleness only by observation on the observer's own
/// (test) clock, takeover with a higher generation, fencing, release, heartbeats.
@Suite struct ClaimTests {
  static let ttl = Duration.seconds(2)
  /// Another node: another boot id, so the dead-pid shortcut never applies.
  static let nodeB = ClaimIdentity(node: "node-b", pid: 4242, bootID: "other-boot", pidStart: "1")

  static func me(_ node: String = "node-a") -> ClaimIdentity { ClaimIdentity.current(node: node) }

  static func acquired(_ outcome: ClaimOutcome) -> Claim? {
    if case .acquired(let claim, _) = outcome { return claim }
    return nil
  }

  static func holder(_ outcome: ClaimOutcome) -> ClaimHolder? {
    if case .held(let holder) = outcome { return holder }
    return nil
  }

  @Test func theFenceLooksAtMostEveryIntervalButAlwaysBeforeTheCommit() async throws {
    let dir = CoreTempDir()
    let clock = TestClock()
    var a = ClaimBook(identity: Self.me(), ttl: Self.ttl, clock: clock)
    var b = ClaimBook(identity: Self.nodeB, ttl: Self.ttl, clock: clock)
    let claim = try #require(Self.acquired(try a.tryAcquire(folder: dir.path)))
    let fence = ClaimFence(claim, clock: clock, interval: .milliseconds(250))
    #expect(!fence.isLost())
    // B takes the claim over once it has seen it unchanged for the TTL.
    #expect(Self.holder(try b.tryAcquire(folder: dir.path)) != nil)
    await clock.advance(by: Self.ttl)
    #expect(Self.acquired(try b.tryAcquire(folder: dir.path))?.generation == 2)
    // Looked at 2 s ago: looks again. A second fence that looked just now trusts its look until the interval.
    #expect(fence.isLost())
    let fresh = ClaimFence(claim, clock: clock, interval: .milliseconds(250))
    let otherDir = CoreTempDir()
    let other = try #require(Self.acquired(try a.tryAcquire(folder: otherDir.path)))
    let otherFence = ClaimFence(other, clock: clock, interval: .milliseconds(250))
    #expect(!otherFence.isLost())
    unlink(other.path)
    #expect(!otherFence.isLost(), "within the interval the last look stands")
    #expect(!otherFence.isCurrent(), "before the commit it always looks")
    #expect(otherFence.isLost())
    #expect(!fresh.isCurrent())
  }

  @Test func firstClaimWinsAndOthersSeeWhoHoldsIt() async throws {
    let dir = CoreTempDir()
    let clock = TestClock()
    var a = ClaimBook(identity: Self.me(), ttl: Self.ttl, clock: clock)
    var b = ClaimBook(identity: Self.nodeB, ttl: Self.ttl, clock: clock)
    let claim = try #require(Self.acquired(try a.tryAcquire(folder: dir.path)))
    #expect(claim.generation == 1)
    #expect(claim.path == dir.path + "/.ckptd-claim.1")
    let bytes = try #require(ClaimBook.readSmall(claim.path))
    let record = try #require(ClaimRecord.decode(bytes))
    #expect(record.node == "node-a")
    #expect(record.pid == getpid())
    #expect(record.bootID == ClaimIdentity.bootID())
    #expect(!record.bootID.isEmpty)
    #expect(record.generation == 1)
    let seen = try #require(Self.holder(try b.tryAcquire(folder: dir.path)))
    #expect(seen.description == "node node-a pid \(getpid())")
    #expect(seen.unchangedFor == .zero)
    // The same process asking again is just another contender: it does not get the claim twice.
    #expect(Self.holder(try a.tryAcquire(folder: dir.path)) != nil)
    claim.release()
    #expect(access(claim.path, F_OK) != 0)
    #expect(Self.acquired(try b.tryAcquire(folder: dir.path)) != nil)
  }

  @Test func aClaimIsStaleOnlyAfterBeingSeenUnchangedForTheTTL() async throws {
    let dir = CoreTempDir()
    let clock = TestClock()
    var a = ClaimBook(identity: Self.nodeB, ttl: Self.ttl, clock: clock)
    var b = ClaimBook(identity: Self.me(), ttl: Self.ttl, clock: clock)
    let old = try #require(Self.acquired(try a.tryAcquire(folder: dir.path)))
    // A claim file dated in 1970: file times mean nothing, so this is not stale at first sight.
    var times = [timespec(tv_sec: 1, tv_nsec: 0), timespec(tv_sec: 1, tv_nsec: 0)]
    #expect(utimensat(AT_FDCWD, old.path, &times, 0) == 0)
    #expect(Self.holder(try b.tryAcquire(folder: dir.path)) != nil)
    await clock.advance(by: Self.ttl - .milliseconds(1))
    #expect(Self.holder(try b.tryAcquire(folder: dir.path))?.unchangedFor == Self.ttl - .milliseconds(1))
    await clock.advance(by: .milliseconds(1))
    guard case .acquired(let taken, let tookOver) = try b.tryAcquire(folder: dir.path) else {
      Issue.record("the stale claim was not taken over")
      return
    }
    #expect(taken.generation == 2)
    #expect(tookOver?.record?.node == "node-b")
    #expect(access(old.path, F_OK) != 0)
    // The old holder is fenced off: not current, refresh fails, release leaves the new claim alone.
    #expect(!old.isCurrent())
    #expect(throws: CheckpointError.self) { try old.refresh() }
    old.release()
    #expect(taken.isCurrent())
    #expect(access(taken.path, F_OK) == 0)
  }

  @Test func refreshedClaimsAreNeverTakenOver() async throws {
    let dir = CoreTempDir()
    let clock = TestClock()
    var a = ClaimBook(identity: Self.nodeB, ttl: Self.ttl, clock: clock)
    var b = ClaimBook(identity: Self.me(), ttl: Self.ttl, clock: clock)
    let claim = try #require(Self.acquired(try a.tryAcquire(folder: dir.path)))
    for _ in 0..<40 {
      #expect(Self.holder(try b.tryAcquire(folder: dir.path)) != nil)
      await clock.advance(by: Self.ttl / 4)
      try claim.refresh()
    }
    #expect(claim.isCurrent())
    let bytes = try #require(ClaimBook.readSmall(claim.path))
    let record = try #require(ClaimRecord.decode(bytes))
    #expect(record.beat == 40)
  }

  @Test func aDeadProcessOfThisBootLosesItsClaimAtOnce() async throws {
    let dir = CoreTempDir()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/true")
    try process.run()
    process.waitUntilExit()
    let dead = ClaimIdentity(
      node: "node-a", pid: process.processIdentifier, bootID: ClaimIdentity.bootID(), pidStart: "12345")
    let clock = TestClock()
    var a = ClaimBook(identity: dead, ttl: Self.ttl, clock: clock)
    var b = ClaimBook(identity: Self.me(), ttl: Self.ttl, clock: clock)
    #expect(Self.acquired(try a.tryAcquire(folder: dir.path)) != nil)
    #expect(Self.me().holderIsDead(dead.record()))
    guard case .acquired(let claim, let tookOver) = try b.tryAcquire(folder: dir.path) else {
      Issue.record("a dead process's claim was not taken at once")
      return
    }
    #expect(claim.generation == 2)
    #expect(tookOver?.record?.pid == process.processIdentifier)
    // A live process of this boot (this one) keeps its claim.
    #expect(!Self.me().holderIsDead(Self.me().record()))
  }

  @Test func anEmptyClaimFileIsHeldByAnUnknownHolderUntilItGoesStale() async throws {
    let dir = CoreTempDir()
    try dir.write(".ckptd-claim.1", "")
    let clock = TestClock()
    var b = ClaimBook(identity: Self.me(), ttl: Self.ttl, clock: clock)
    #expect(Self.holder(try b.tryAcquire(folder: dir.path))?.description == "an unknown holder")
    await clock.advance(by: Self.ttl)
    #expect(Self.acquired(try b.tryAcquire(folder: dir.path))?.generation == 2)
  }

  @Test func twoTakersOfOneStaleClaimGetOneWinner() async throws {
    let dir = CoreTempDir()
    let clock = TestClock()
    var a = ClaimBook(identity: Self.nodeB, ttl: Self.ttl, clock: clock)
    var b = ClaimBook(identity: Self.me("b"), ttl: Self.ttl, clock: clock)
    var c = ClaimBook(identity: Self.me("c"), ttl: Self.ttl, clock: clock)
    _ = try #require(Self.acquired(try a.tryAcquire(folder: dir.path)))
    _ = try b.tryAcquire(folder: dir.path)
    _ = try c.tryAcquire(folder: dir.path)
    await clock.advance(by: Self.ttl)
    let first = try b.tryAcquire(folder: dir.path)
    let second = try c.tryAcquire(folder: dir.path)
    #expect(Self.acquired(first) != nil)
    #expect(Self.holder(second)?.record?.node == "b")
  }

  @Test func aClaimThatCannotBeCreatedIsAnErrorNamingTheFile() {
    let clock = TestClock()
    var b = ClaimBook(identity: Self.me(), ttl: Self.ttl, clock: clock)
    #expect {
      try b.tryAcquire(folder: "/nonexistent-ckptd-folder")
    } throws: { error in
      "\(error)".contains("/nonexistent-ckptd-folder/.ckptd-claim.1: cannot create the claim file")
    }
  }

  @Test func keepAliveRefreshesEveryQuarterTTLAndStopsWhenSuperseded() async throws {
    let dir = CoreTempDir()
    let clock = TestClock()
    var a = ClaimBook(identity: Self.me(), ttl: Self.ttl, clock: clock)
    let claim = try #require(Self.acquired(try a.tryAcquire(folder: dir.path)))
    let beats = Mutexed(0)
    let ended = Mutexed<CheckpointError??>(nil)
    let keeper = Task {
      let error = await claim.keepAlive(clock: clock, every: Self.ttl / 4) { beats.withLock { $0 += 1 } }
      ended.withLock { $0 = .some(error) }
    }
    defer { keeper.cancel() }
    var rounds = 0
    while beats.withLock({ $0 }) < 3 && rounds < 100_000 {
      await clock.advance(by: Self.ttl / 4)
      await Task.yield()
      rounds += 1
    }
    #expect(beats.withLock { $0 } >= 3)
    let bytes = try #require(ClaimBook.readSmall(claim.path))
    let record = try #require(ClaimRecord.decode(bytes))
    #expect(record.beat >= 3)
    // Someone takes over (generation 2 appears): the next beat ends the loop with the reason.
    try dir.write(".ckptd-claim.2", String(decoding: Self.nodeB.record(generation: 2).encoded(), as: UTF8.self))
    rounds = 0
    while ended.withLock({ $0 == nil }) && rounds < 100_000 {
      await clock.advance(by: Self.ttl / 4)
      await Task.yield()
      rounds += 1
    }
    let error = ended.withLock { $0 } ?? nil
    #expect(error?.message.contains("claim taken over by node node-b pid 4242") == true)
  }

  @Test func temporariesAreSweptOnlyUnderACurrentClaim() async throws {
    let dir = CoreTempDir()
    try dir.write(".ckptd-tmp.pytorch_model.bin.abc", "x")
    try dir.write(".ckptd-tmp.model.safetensors.def", "y")
    try dir.write("model.safetensors", "keep")
    try dir.write(".ckptd-claim.7.deadbeef", "a claim a killed process was making")
    let clock = TestClock()
    var a = ClaimBook(identity: Self.me(), ttl: Self.ttl, clock: clock)
    let claim = try #require(Self.acquired(try a.tryAcquire(folder: dir.path)))
    try dir.write(".ckptd-claim.2", String(decoding: Self.nodeB.record(generation: 2).encoded(), as: UTF8.self))
    #expect(TemporarySweep.removeLeftovers(in: dir.path, under: claim) == [])
    #expect(access(dir.path + "/.ckptd-tmp.model.safetensors.def", F_OK) == 0)
    unlink(dir.path + "/.ckptd-claim.2")
    #expect(
      TemporarySweep.removeLeftovers(in: dir.path, under: claim) == [
        ".ckptd-claim.7.deadbeef", ".ckptd-tmp.model.safetensors.def", ".ckptd-tmp.pytorch_model.bin.abc",
      ])
    #expect(access(claim.path, F_OK) == 0)
    #expect(access(dir.path + "/model.safetensors", F_OK) == 0)
  }
}

extension ClaimIdentity {
  /// The record this identity would write.
  func record(generation: Int = 1) -> ClaimRecord {
    ClaimRecord(
      node: node, pid: pid, bootID: bootID, pidStart: pidStart, start: "2026-01-01T00:00:00Z",
      generation: generation, beat: 0, token: "t\(generation)")
  }
}
