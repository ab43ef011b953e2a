import CheckpointFormats
import Foundation
import Logging

extension Daemon {
  /// Copies the loop's state into the status document (the publisher rate-limits the writes).
  func publishStatus() {
    let figures = watcher.figures
    let queuedIds = Set(queue.queued)
    let directories = roots.values.sorted { $0.path < $1.path }.map { root -> DirectoryStatus in
      var pending = root.pending
      for name in root.converting where queuedIds.contains(root.folder(name)) {
        pending[name] = "queued"
      }
      for name in root.converting where !queuedIds.contains(root.folder(name)) {
        pending[name] = nil
      }
      return DirectoryStatus(
        path: root.path, format: root.config.format.rawValue, dtype: root.config.dtype.rawValue,
        state: root.present ? .watching : (root.lastError == nil ? .missing : .error),
        counts: root.counts,
        pending: pending.keys.sorted().map {
          PendingCheckpoint(name: $0, reason: pending[$0] ?? "")
        },
        lastError: root.lastError)
    }
    let inotify = InotifyStatus(
      watches: registry.count, overflows: figures.overflows, rescans: rescans)
    let problems = config.problems + (reloadError.map { [$0] } ?? [])
    let now = Date().timeIntervalSince1970
    let current = publisher.snapshot
    if current.directories == directories && current.inotify == inotify && current.problems == problems
      && now - lastStatusPublish < Self.statusHeartbeat
    {
      return
    }
    lastStatusPublish = now
    publisher.update { status in
      status.directories = directories
      status.inotify = inotify
      status.problems = problems
    }
  }

  /// Seconds after which an unchanged status is written again, to keep `updated_at` fresh (`ckptd status`
  /// calls a file older than `StatusHealth.defaultStaleAfter` stale).
  static let statusHeartbeat: Double = 5

  /// The one-line summary for `STATUS=` and the log.
  func summaryLine() -> String {
    let present = roots.values.filter(\.present).count
    let pending = roots.values.reduce(0) { $0 + $1.pending.count }
    let converted = roots.values.reduce(0) {
      $0 + ($1.counts[ManifestEvent.converted.rawValue] ?? 0)
    }
    let failed = roots.values.reduce(0) { $0 + ($1.counts[ManifestEvent.failed.rawValue] ?? 0) }
    var line =
      "watching \(present)/\(roots.count) dirs, \(queue.active.count) converting, \(pending) pending"
    line += ", \(converted) converted, \(failed) failed"
    if !config.problems.isEmpty { line += ", \(config.problems.count) bad drop-in(s)" }
    return line
  }
}
