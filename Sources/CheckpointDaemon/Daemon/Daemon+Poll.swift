import CheckpointFormats
import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// Polling where inotify is blind (DESIGN.md "Shared file systems and several nodes"): on network, cluster and
/// FUSE file systems a write made on another machine raises no event here, so such directories are also polled
/// every `poll_seconds` on the daemon's clock.
extension Daemon {
  /// Identifies `root`'s file system (of its nearest existing parent while it is missing) and decides how it is
  /// watched; starts or stops its polling.
  func detectFileSystem(_ root: WatchedRoot) {
    let report = FileSystemDetection.detect(path: root.path, setting: root.config.watch)
    if report != root.fileSystem {
      let how = report.mode == .poll ? "inotify + poll every \(root.config.pollSeconds) s" : "inotify"
      logger.info("\(root.path): \(report.type), \(how) (\(report.reason))")
    }
    root.fileSystem = report
    root.tracker.rules.trustsFileTimes = !root.isPolled
    if root.isPolled {
      if root.pollAt == nil || root.pollAt.map({ $0 > clock.now() + root.pollInterval }) == true {
        root.pollAt = Self.nextTick(after: clock.now(), every: root.pollInterval)
      }
    } else {
      root.pollAt = nil
      root.lastPoll = nil
    }
  }

  /// The first multiple of `interval` on the clock after `now`: directories with the same `poll_seconds` are
  /// polled in one pass (one wake-up, one status write), however far apart they were found.
  static func nextTick(after now: Duration, every interval: Duration) -> Duration {
    let step = max(interval.nanosecondCount, 1)
    return .nanoseconds((now.nanosecondCount / step + 1) * step)
  }

  /// Polls every directory whose time has come.
  func pollDue(now: Duration) {
    for root in roots.values.sorted(by: { $0.path < $1.path }) {
      guard let at = root.pollAt, at <= now else { continue }
      poll(root, now: now)
    }
  }

  /// One poll: the root listed; checkpoint folders not seen before are tracked, gone ones dropped; the folders
  /// not done yet are stat'ed (their files' sizes and mtimes) and a change starts their settle time again.
  /// Folders already converted are never read again.
  func poll(_ root: WatchedRoot, now: Duration) {
    root.pollAt = Self.nextTick(after: now, every: root.pollInterval)
    let started = ContinuousClock.now
    let wall = clock.wallTime()
    defer {
      let took = started.duration(to: ContinuousClock.now)
      root.lastPoll = PollFigures(at: wall, seconds: DaemonClock.seconds(took))
      metrics.polled()
      metricsDirty = true
    }
    guard root.present else {
      establishIfAppeared(root)
      return
    }
    guard let names = DistributedFolder.names(root.path) else {
      if !Self.isDirectory(root.path) { rootLost(root) }
      return
    }
    var present = Set<String>()
    var manifest: [String: ManifestRecord]?
    for name in names where root.tracker.rules.matches(name) {
      let folder = root.folder(name)
      if root.done.contains(name) || root.converting.contains(name) || root.tracker.isTracking(folder) {
        present.insert(name)
        continue
      }
      var info = stat()
      guard lstat(folder, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { continue }
      present.insert(name)
      if manifest == nil { manifest = root.latestRecords() }
      consider(root, name: name, manifest: manifest ?? [:])
    }
    dropAbsent(root, present: present)
    let wallSeconds = clock.wallSeconds
    for folder in root.tracker.folders {
      if root.converting.contains((folder as NSString).lastPathComponent) { continue }
      guard let snapshot = FolderSnapshot.take(folder, keep: root.tracker.rules.readyMarker) else { continue }
      if root.tracker.observe(folder, snapshot: snapshot, now: wallSeconds) {
        let quiet = max(Duration.seconds(root.config.settleSeconds), options.stabilityDelay)
        folderDue[folder] = Due(root: root.path, at: now + quiet)
      }
    }
  }
}
