import CheckpointFormats
import Foundation
import Synchronization
import SystemPackage
import Testing

@testable import CheckpointDaemon

/// A fresh temporary directory, removed by `cleanup()`.
struct WatcherTempDir {
  let path: String

  init() throws {
    path = NSTemporaryDirectory() + "ckptd-watch-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }

  func file(_ name: String, _ text: String = "x") throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path + "/" + name))
  }

  func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Collects watcher messages until one satisfies `predicate` (one that never comes hits the suite's time limit).
func collect(
  _ watcher: InotifyWatcher, until predicate: @escaping @Sendable (WatcherMessage) -> Bool
) async -> [WatcherMessage] {
  var seen: [WatcherMessage] = []
  for await message in watcher.messages {
    seen.append(message)
    if predicate(message) { break }
  }
  return seen
}

@Suite(.serialized, .timeLimit(.minutes(1))) struct WatcherTests {
  @Test func seesCreateAndCloseWrite() async throws {
    let dir = try WatcherTempDir()
    defer { dir.cleanup() }
    let watcher = try InotifyWatcher()
    defer { watcher.close() }
    let wd = try watcher.watch(dir.path, mask: WatchMask.checkpoint)
    #expect(wd > 0)
    #expect(watcher.watches[wd] == dir.path)
    try dir.file("trainer_state.json", "{}")
    let seen = await collect(watcher) { message in
      if case .event(let event) = message {
        return event.name == "trainer_state.json" && event.has(WatchMask.closeWrite)
      }
      return false
    }
    let events = seen.compactMap { message -> InotifyEvent? in
      if case .event(let event) = message { return event }
      return nil
    }
    #expect(events.contains { $0.has(WatchMask.create) && $0.name == "trainer_state.json" })
    #expect(events.contains { $0.has(WatchMask.closeWrite) && $0.path == dir.path + "/trainer_state.json" })
  }

  /// A failed start closes both ends of the wake-up pipe (once: the numbers may be reused by then).
  @Test func failedStartClosesTheWakePipe() throws {
    let seen = Mutexed<[(fd: Int32, inode: UInt64)]>([])
    #expect(throws: CheckpointError.self) {
      _ = try InotifyEngine(
        initialize: { false },
        onPipe: { readEnd, writeEnd in
          for fd in [readEnd.rawValue, writeEnd.rawValue] {
            var info = stat()
            _ = fstat(fd, &info)
            seen.withLock { $0.append((fd, UInt64(info.st_ino))) }
          }
        })
    }
    let pipes = seen.withLock { $0 }
    #expect(pipes.count == 2)
    for (fd, inode) in pipes {
      var info = stat()
      // Closed, or reused for something else by another test: not our pipe any more.
      #expect(fstat(fd, &info) != 0 || UInt64(info.st_ino) != inode)
    }
  }

  @Test func descriptorIsCloseOnExec() throws {
    let watcher = try InotifyWatcher()
    defer { watcher.close() }
    #expect(watcher.descriptor >= 0)
    #expect(fcntl(watcher.descriptor, F_GETFD) & FD_CLOEXEC != 0)
  }

  @Test func deletedFolderDropsItsWatchAndCanBeWatchedAgain() async throws {
    let dir = try WatcherTempDir()
    defer { dir.cleanup() }
    let watcher = try InotifyWatcher()
    defer { watcher.close() }
    let sub = dir.path + "/checkpoint-1"
    try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: false)
    let wd = try watcher.watch(sub, mask: WatchMask.checkpoint)
    try FileManager.default.removeItem(atPath: sub)
    let seen = await collect(watcher) { message in
      if case .event(let event) = message { return event.has(WatchMask.ignored) }
      return false
    }
    #expect(seen.contains { if case .event(let e) = $0 { e.wd == wd && e.has(WatchMask.deleteSelf) } else { false } })
    #expect(watcher.watches[wd] == nil)
    // Re-created under the same name: the live descriptor is ours, not the library's stale one.
    try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: false)
    let again = try watcher.watch(sub, mask: WatchMask.checkpoint)
    #expect(again != wd)
    try "{}".write(toFile: sub + "/trainer_state.json", atomically: false, encoding: .utf8)
    let more = await collect(watcher) { message in
      if case .event(let e) = message { e.wd == again && e.has(WatchMask.closeWrite) } else { false }
    }
    #expect(more.contains { if case .event(let e) = $0 { e.directory == sub } else { false } })
  }

  /// Issue 14 item 5: every checkpoint folder the daemon watched stayed in libinotifytools' own tables (a
  /// watch struct, its path and two tree nodes, about 300 bytes) after the folder was rotated away or unwatched,
  /// so RSS grew with every conversion. The library is only a reader now: it holds no watch at all.
  @Test func folderWatchesLeaveNothingInTheLibrary() async throws {
    let dir = try WatcherTempDir()
    defer { dir.cleanup() }
    let watcher = try InotifyWatcher()
    defer { watcher.close() }
    #expect(watcher.descriptor >= 0)
    var deleted: [Int32] = []
    for index in 0..<40 {
      let folder = dir.path + "/checkpoint-\(index)"
      try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
      let wd = try watcher.watch(folder, mask: WatchMask.checkpoint)
      // Watched again (a rescan, an attribute change): the same descriptor.
      #expect(try watcher.watch(folder, mask: WatchMask.checkpoint) == wd)
      if index % 2 == 0 {
        watcher.unwatch(wd)
      } else {
        deleted.append(wd)
        try FileManager.default.removeItem(atPath: folder)
      }
    }
    let last = try #require(deleted.last)
    _ = await collect(watcher) { message in
      if case .event(let event) = message { event.wd == last && event.has(WatchMask.ignored) } else { false }
    }
    for wd in deleted { #expect(watcher.watches[wd] == nil) }
    #expect(watcher.libraryWatchCount == 0)
  }

  @Test func manyRootsOneWatchEach() throws {
    let dir = try WatcherTempDir()
    defer { dir.cleanup() }
    let watcher = try InotifyWatcher()
    defer { watcher.close() }
    var descriptors: Set<Int32> = []
    for index in 0..<1000 {
      let root = dir.path + "/run-\(index)"
      try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
      descriptors.insert(try watcher.watch(root, mask: WatchMask.root))
    }
    #expect(descriptors.count == 1000)
    #expect(watcher.watches.count == 1000)
  }

  @Test func watchingAMissingFolderFailsWithItsPath() throws {
    let watcher = try InotifyWatcher()
    defer { watcher.close() }
    #expect(throws: CheckpointError.self) {
      try watcher.watch("/nonexistent/ckptd-\(UUID().uuidString)", mask: WatchMask.root)
    }
  }
}

/// Tests that act on, or depend on, what the one inotify engine of the test process delivers to every daemon at
/// once: an overflow sends every client a rescan, and a rescan lists a mounted directory afresh, which would
/// find what polling is there to find. They run one at a time.
@Suite(.serialized) enum ProcessWideInotifyTests {}

extension ProcessWideInotifyTests {
  @Suite(.timeLimit(.minutes(2))) struct Overflow {
    @Test func realOverflowAsksForRescan() async throws {
      let dir = try WatcherTempDir()
      defer { dir.cleanup() }
      let watcher = try InotifyWatcher()
      defer { watcher.close() }
      try watcher.watch(dir.path, mask: WatchMask.checkpoint)
      let before = watcher.figures.overflows
      // Returns once the inotify thread has stopped reading.
      watcher.pauseReading(seconds: 60)
      // One-byte writes alternating between two files: one IN_MODIFY each (alternating names are never merged),
      // past the kernel's queue limit in well under a second, so the pause (which holds every other test's
      // events too) stays short.
      let limit =
        Int(
          (try? String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 16384
      let files = ["a", "b"].map { open(dir.path + "/" + $0, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644) }
      #expect(files.allSatisfy { $0 >= 0 })
      for index in 0..<(limit + 64) { _ = write(files[index % 2], "x", 1) }
      for fd in files { close(fd) }
      watcher.resumeReading()
      let seen = await collect(watcher) { message in
        if case .rescan = message { true } else { false }
      }
      #expect(seen.contains(.rescan(reason: "inotify queue overflow")))
      #expect(watcher.figures.overflows > before)
    }
  }
}
