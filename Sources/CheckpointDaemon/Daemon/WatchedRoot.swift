import CheckpointFormats
import Foundation

/// The daemon's state for one watched output directory. Only touched on the daemon's loop queue.
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

  init(config: WatchConfig, structuralCheck: (@Sendable (String) throws -> Void)?) {
    self.config = config
    manifest = Manifest(path: config.manifestPath)
    let rules = CompletionRules(
      pattern: config.pattern, readyMarker: config.readyMarker, settleSeconds: config.settleSeconds)
    if let structuralCheck {
      tracker = CheckpointTracker(rules: rules, structuralCheck: structuralCheck)
    } else {
      tracker = CheckpointTracker(rules: rules)
    }
    loadCounts()
  }

  var path: String { config.path }

  func folder(_ name: String) -> String { path + "/" + name }

  /// Counts by event from the manifest (a torn last line is tolerated by the reader).
  func loadCounts() {
    counts = [:]
    for record in (try? manifest.read()) ?? [] { counts[record.event.rawValue, default: 0] += 1 }
  }

  /// Takes a new configuration of the same directory.
  func update(_ config: WatchConfig) {
    self.config = config
    tracker.rules = CompletionRules(
      pattern: config.pattern, readyMarker: config.readyMarker, settleSeconds: config.settleSeconds)
  }
}
