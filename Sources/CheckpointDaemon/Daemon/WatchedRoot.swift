import CheckpointConversion
import CheckpointFormats
import Foundation

/// The daemon's state for one watched output directory. Only touched by the daemon's actor.
final class WatchedRoot {
  var config: WatchConfig
  let manifest: Manifest
  var tracker: CheckpointTracker
  var retries = RetryBook()
  /// Watched with inotify (true) or missing (false).
  var present = false
  /// Pending checkpoint folder name to the reason it waits.
  var pending: [String: String] = [:]
  /// Checkpoint names converted (or skipped) whose outputs are in place.
  var done: Set<String> = []
  /// Checkpoint names being converted now (or queued).
  var converting: Set<String> = []
  /// Manifest events counted by outcome.
  var counts: [String: Int] = [:]
  var lastError: String?
  /// The last manifest append that failed (shown in the status file until the daemon restarts).
  var manifestError: String?
  /// The directory's file system and the watch mode chosen for it (start, reload).
  var fileSystem: FileSystemReport?
  /// When the directory is polled next (clock time); nil where inotify alone watches it.
  var pollAt: Duration?
  /// The last poll's wall time and duration (status file).
  var lastPoll: PollFigures?
  /// The lock every manifest change of this directory is made under (O_EXCL lock file beside the manifest).
  var manifestLock: ManifestLock
  /// Records not yet written because another process held the manifest lock, with the claims to release once
  /// they are durable.
  var unrecorded: [UnrecordedLines] = []
  /// When the manifest lock is tried again for `unrecorded`.
  var lockRetryAt: Duration?
  /// Checkpoint folders holding leftovers (temporaries, half-made claims, a dead holder's claim) that wait for
  /// their claim to be free before they are swept.
  var leftovers: Set<String> = []
  /// When `leftovers` are tried again.
  var sweepAt: Duration?
  /// The last record of each checkpoint, read incrementally (start-up, rescans and every evaluation ask for it).
  private var view: ManifestView

  init(config: WatchConfig, lock: ManifestLock, structuralCheck: (@Sendable (String) throws -> Void)?) {
    self.config = config
    manifest = Manifest(path: config.manifestPath)
    view = ManifestView(path: config.manifestPath)
    manifestLock = lock
    var rules = CompletionRules(
      pattern: config.pattern, readyMarker: config.readyMarker, settleSeconds: config.settleSeconds)
    rules.waitsForDistributed = config.consolidate != .never
    if let structuralCheck {
      tracker = CheckpointTracker(rules: rules, structuralCheck: structuralCheck)
    } else {
      tracker = CheckpointTracker(rules: rules)
    }
    loadCounts()
  }

  var path: String { config.path }

  /// Whether the directory is polled (a network, cluster or FUSE file system, or `watch = "poll"`).
  var isPolled: Bool { fileSystem?.mode == .poll }

  /// The poll interval.
  var pollInterval: Duration { .milliseconds(Int64((max(config.pollSeconds, 0.01) * 1000).rounded())) }

  func folder(_ name: String) -> String { path + "/" + name }

  /// Counts by event from the manifest (a torn last line is tolerated by the reader).
  func loadCounts() {
    // One read serves both: the counts, and the latest records every scan asks for next.
    _ = view.refreshed()
    counts = view.counts
  }

  /// The last record of each checkpoint; only what was appended since the last look is read, and nothing when
  /// the file's size and mtime are unchanged.
  func latestRecords() -> [String: ManifestRecord] {
    view.refreshed()
  }

  /// The same, read through a fresh open (no attribute cache: after taking a claim, what another node appended
  /// must be seen; on NFS, opening the file revalidates it).
  func freshRecords() -> [String: ManifestRecord] {
    view.fresh()
  }

  /// Forgets the records of checkpoints whose folders are gone (see `ManifestView.keep`).
  func keepRecords(only names: Set<String>) { view.keep(only: names) }

  /// Forgets the record of a checkpoint whose folder went away.
  func forgetRecord(_ name: String) { view.forget(name) }

  /// Takes a new configuration of the same directory.
  func update(_ config: WatchConfig) {
    self.config = config
    tracker.rules = CompletionRules(
      pattern: config.pattern, readyMarker: config.readyMarker, settleSeconds: config.settleSeconds)
    tracker.rules.waitsForDistributed = config.consolidate != .never
    tracker.rules.trustsFileTimes = !isPolled
  }
}

/// Manifest lines waiting for the lock, and what to do once they are durable.
struct UnrecordedLines {
  var lines: [ManifestRecord]
  /// Released once the lines are written (or could not be).
  var claim: HeldClaim?
  /// When that claim is refreshed next, while the lines wait.
  var beatAt: Duration
}
