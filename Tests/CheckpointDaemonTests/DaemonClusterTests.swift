import CheckpointFormats
import Clocks
import Foundation
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// The daemon on shared storage (DESIGN.md "Shared file systems and several nodes"): polling where inotify is
/// blind, claims around every conversion, the manifest lock, leftovers swept only under a free claim. Every wait
/// is on the daemon's test clock; another instance is played by files the test writes.
@Suite(.timeLimit(.minutes(2))) struct DaemonClusterTests {
  static let cluster = "node_name = \"me\"\nclaim_ttl_seconds = 2"

  /// Writes a claim of a live holder on another node (its boot id is not ours: only observation can judge it).
  static func plantClaim(in folder: String, generation: Int = 1, beat: Int = 0, node: String = "other") throws {
    try plant(
      at: folder + "/" + ClaimBook.checkpointPrefix + String(generation), generation: generation, beat: beat, node: node
    )
  }

  /// Writes another node's claim or lock record at `path`.
  static func plant(at path: String, generation: Int = 1, beat: Int = 0, node: String = "other") throws {
    let record = ClaimRecord(
      node: node, pid: 4242, bootID: "another-boot", pidStart: "1", start: "2026-01-01T00:00:00Z",
      generation: generation, beat: beat, token: "t\(generation)")
    try Data(record.encoded()).write(to: URL(fileURLWithPath: path))
  }

  static func claimFiles(in folder: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter {
      $0.hasPrefix(ClaimBook.checkpointPrefix)
    }.sorted()
  }

  static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

  @Test func aLocalFolderIsWatchedWithInotifyAlone() async throws {
    let fixture = try DaemonFixture(mainExtra: Self.cluster)
    fixture.start()
    #expect(await fixture.until { await $0.status.directories.first?.fileSystem?.mode == "inotify" })
    #expect(await fixture.daemon.status.directories.first?.lastPoll == nil)
    await fixture.settle()
    #expect(await fixture.daemon.nextWake == nil)
    await fixture.stop()
  }

  @Test func pollsOfOneIntervalShareATick() {
    #expect(Daemon.nextTick(after: .zero, every: .seconds(10)) == .seconds(10))
    #expect(Daemon.nextTick(after: .milliseconds(2_999), every: .seconds(10)) == .seconds(10))
    #expect(Daemon.nextTick(after: .seconds(10), every: .seconds(10)) == .seconds(20))
    #expect(Daemon.nextTick(after: .milliseconds(1_050), every: .milliseconds(200)) == .milliseconds(1_200))
  }

  @Test func aLiveClaimIsNeverTakenAndAStaleOneIsTakenOver() async throws {
    let fixture = try DaemonFixture(mainExtra: Self.cluster)
    let folder = try fixture.checkpoint("checkpoint-1")
    try Self.plantClaim(in: folder)
    fixture.start()
    #expect(
      await fixture.until {
        await $0.status.directories.first?.pending.first?.reason.hasPrefix("claimed by node other pid 4242") == true
      })
    // The holder refreshes its claim before every move of the clock: never seen unchanged for the TTL.
    var notes = fixture.daemon.notes.makeAsyncIterator()
    var advanced = Duration.zero
    var beat = 0
    while advanced < .seconds(8) {
      beat += 1
      try Self.plantClaim(in: folder, beat: beat)
      let wake = try #require(await fixture.daemon.nextWake)
      #expect(wake <= .milliseconds(500))
      await fixture.clock.advance(by: wake + .nanoseconds(1))
      advanced += wake
      _ = await notes.next()
    }
    #expect(fixture.converter.callCount == 0)
    #expect(fixture.events("checkpoint-1").isEmpty)
    // The holder dies: its claim stays as it was, and after the TTL on our clock it is taken over.
    let before = fixture.clock.now
    #expect(await fixture.until { _ in fixture.events("checkpoint-1") == [.converted] })
    #expect(before.duration(to: fixture.clock.now) >= .seconds(2))
    #expect(fixture.converter.callCount == 1)
    #expect(await fixture.until { _ in Self.claimFiles(in: folder).isEmpty })
    await fixture.stop()
  }

  @Test func aConversionWhoseClaimIsTakenOverCommitsNothing() async throws {
    let converter = FakeConverter(.blockUntilReleased)
    let fixture = try DaemonFixture(converter: converter, mainExtra: Self.cluster)
    fixture.start()
    let folder = try fixture.checkpoint("checkpoint-1")
    #expect(await fixture.until { await $0.status.active.first?.checkpoint == "checkpoint-1" })
    #expect(Self.claimFiles(in: folder) == [".ckptd-claim.1"])
    // Another instance judged our claim stale and took it over (generation 2, the older one removed, as
    // ClaimBook does), and writes its temporary.
    try Self.plantClaim(in: folder, generation: 2)
    unlink(folder + "/.ckptd-claim.1")
    let theirs = folder + "/" + OutputFile.temporaryPrefix + "pytorch_model.bin.theirs"
    try "theirs".write(toFile: theirs, atomically: false, encoding: .utf8)
    #expect(await fixture.until { await $0.claimLost(folder) })
    converter.release()
    #expect(await fixture.until { await $0.status.active.isEmpty })
    #expect(fixture.events("checkpoint-1").isEmpty)
    #expect(Self.exists(theirs), "the new holder's temporary was removed")
    #expect(Self.claimFiles(in: folder) == [".ckptd-claim.2"], "the new holder's claim was touched")
    // The new holder finishes: outputs, its record, its claim gone. This instance then leaves it alone.
    try "weights".write(toFile: folder + "/pytorch_model.bin", atomically: false, encoding: .utf8)
    var record = ManifestRecord(
      checkpoint: "checkpoint-1", event: .converted, format: "bin", dtype: "keep", start: Date(), end: Date())
    record.node = "other"
    record.outputs = [ManifestFile(name: "pytorch_model.bin", bytes: 7)]
    try Manifest(path: fixture.root + "/.ckptd-manifest.jsonl").append(record)
    unlink(theirs)
    unlink(folder + "/.ckptd-claim.2")
    await fixture.settle()
    #expect(fixture.events("checkpoint-1") == [.converted])
    #expect(converter.callCount == 1)
    await fixture.stop()
  }

  @Test func theClaimIsHeldUntilTheRecordIsWrittenUnderTheManifestLock() async throws {
    let fixture = try DaemonFixture(mainExtra: Self.cluster)
    let lock = fixture.root + "/.ckptd-manifest.jsonl.lock.1"
    try Self.plant(at: lock)
    fixture.start()
    let folder = try fixture.checkpoint("checkpoint-1")
    #expect(await fixture.until { _ in fixture.converter.callCount == 1 && Self.exists(folder + "/pytorch_model.bin") })
    #expect(await fixture.until { await $0.status.active.isEmpty })
    // Converted, but the lock is another's: no record yet, and the claim stays so that nobody converts it again.
    #expect(fixture.events("checkpoint-1").isEmpty)
    #expect(Self.claimFiles(in: folder) == [".ckptd-claim.1"])
    unlink(lock)
    #expect(await fixture.until { _ in fixture.events("checkpoint-1") == [.converted] })
    #expect(await fixture.until { _ in Self.claimFiles(in: folder).isEmpty })
    #expect(!Self.exists(lock))
    await fixture.stop()
  }

  @Test func aStaleManifestLockIsTakenOver() async throws {
    let fixture = try DaemonFixture(mainExtra: Self.cluster)
    let lock = fixture.root + "/.ckptd-manifest.jsonl.lock.1"
    try Self.plant(at: lock)
    fixture.start()
    try fixture.checkpoint("checkpoint-1")
    let before = fixture.clock.now
    #expect(await fixture.until { _ in fixture.events("checkpoint-1") == [.converted] })
    #expect(before.duration(to: fixture.clock.now) >= .seconds(2))
    #expect(!Self.exists(lock))
    #expect(await fixture.until { _ in !Self.exists(fixture.root + "/.ckptd-manifest.jsonl.lock.2") })
    await fixture.stop()
  }

  @Test func leftoversAreSweptOnlyOnceNoLiveClaimCoversThem() async throws {
    let fixture = try DaemonFixture(mainExtra: Self.cluster)
    // A converted checkpoint with a killed run's temporary, and one whose temporary belongs to a live holder.
    let free = try fixture.checkpoint("checkpoint-1")
    try "weights".write(toFile: free + "/pytorch_model.bin", atomically: false, encoding: .utf8)
    var record = ManifestRecord(
      checkpoint: "checkpoint-1", event: .converted, format: "bin", dtype: "keep", start: Date(), end: Date())
    record.outputs = [ManifestFile(name: "pytorch_model.bin", bytes: 7)]
    try Manifest(path: fixture.root + "/.ckptd-manifest.jsonl").append(record)
    let freeTemporary = free + "/" + OutputFile.temporaryPrefix + "pytorch_model.bin.killed"
    try "partial".write(toFile: freeTemporary, atomically: false, encoding: .utf8)
    let busy = try fixture.checkpoint("checkpoint-2", marker: false)
    let busyTemporary = busy + "/" + OutputFile.temporaryPrefix + "pytorch_model.bin.live"
    try "partial".write(toFile: busyTemporary, atomically: false, encoding: .utf8)
    try Self.plantClaim(in: busy)
    fixture.start()
    #expect(await fixture.until { _ in !Self.exists(freeTemporary) })
    #expect(Self.exists(busyTemporary))
    #expect(Self.claimFiles(in: free).isEmpty)
    // The live holder keeps its claim fresh for a while: its temporary stays.
    var notes = fixture.daemon.notes.makeAsyncIterator()
    for beat in 1...6 {
      try Self.plantClaim(in: busy, beat: beat)
      guard let wake = await fixture.daemon.nextWake else { break }
      await fixture.clock.advance(by: wake + .nanoseconds(1))
      _ = await notes.next()
    }
    #expect(Self.exists(busyTemporary))
    // It dies: after the TTL its claim and temporary go.
    #expect(await fixture.until { _ in !Self.exists(busyTemporary) })
    #expect(Self.claimFiles(in: busy).isEmpty)
    await fixture.stop()
  }
}

extension ProcessWideInotifyTests {
  /// A daemon watching a bindfs mount, while a "trainer on another node" writes into its backing folder. A rescan
  /// caused by another test (an overflow) would list the mount and find the checkpoint without polling.
  @Suite(.timeLimit(.minutes(2))) struct BlindMounts {
    /// A new bindfs mount (nil without bindfs) and a started daemon watching its `run` folder, with `dropinExtra`
    /// in the drop-in; the caller unmounts.
    static func daemonOnMount(dropinExtra: String) throws -> (BindfsMount, DaemonFixture)? {
      guard let mount = try BindfsMount.make(subtype: "ckptdtest") else { return nil }
      do {
        try FileManager.default.createDirectory(atPath: mount.backing + "/run", withIntermediateDirectories: true)
        let fixture = try DaemonFixture(
          rootPath: mount.mountPoint + "/run", dropinExtra: dropinExtra, mainExtra: DaemonClusterTests.cluster)
        fixture.start()
        return (mount, fixture)
      } catch {
        mount.unmount()
        throw error
      }
    }

    @Test func pollingFindsWhatInotifyCannotSeeOnAFuseMount() async throws {
      guard let (mount, fixture) = try Self.daemonOnMount(dropinExtra: "poll_seconds = 3") else { return }
      defer { mount.unmount() }
      #expect(await fixture.until { await $0.status.directories.first?.fileSystem?.mode == "poll" })
      let fs = await fixture.daemon.status.directories.first?.fileSystem
      #expect(fs?.type == "fuse.ckptdtest")
      #expect(fs?.magic == "0x65735546")
      #expect(fs?.pollSeconds == 3)
      // Written into the backing folder, as a trainer on another node writes: no inotify event on the mount.
      try fixture.checkpoint("checkpoint-1", in: mount.backing + "/run")
      #expect(await fixture.until { _ in fixture.events("checkpoint-1") == [.converted] })
      let status = await fixture.daemon.status.directories.first
      #expect(status?.lastPoll != nil)
      let records = try Manifest(path: fixture.root + "/.ckptd-manifest.jsonl").read()
      #expect(records.map(\.node) == ["me"])
      // The claim goes right after the record is durable (the record may be seen a moment before).
      #expect(await fixture.until { _ in DaemonClusterTests.claimFiles(in: fixture.root + "/checkpoint-1").isEmpty })
      #expect(!DaemonClusterTests.exists(fixture.root + "/.ckptd-manifest.jsonl.lock.1"))
      await fixture.stop()
    }

    @Test func inotifyAloneStaysBlindToWritesFromAnotherNode() async throws {
      guard let (mount, fixture) = try Self.daemonOnMount(dropinExtra: "watch = \"inotify\"") else { return }
      defer { mount.unmount() }
      #expect(await fixture.until { await $0.status.directories.first?.fileSystem?.mode == "inotify" })
      try fixture.checkpoint("checkpoint-1", in: mount.backing + "/run")
      // No deadline is pending and no event comes: what `watch = "auto"` polls for is never seen.
      await fixture.settle()
      #expect(await fixture.daemon.nextWake == nil)
      #expect(fixture.events("checkpoint-1").isEmpty)
      #expect(fixture.converter.callCount == 0)
      await fixture.stop()
    }
  }
}
