import CheckpointFormats
import Foundation
import Logging

extension Daemon {
  /// Copies the actor's state into the status document and writes it, when the rate limit allows; until
  /// then the copy waits (`statusStale`), so a burst of inputs costs one copy per write, not one per input.
  func publishStatus() {
    statusStale = true
    guard publisher.earliestWrite <= clock.now() else { return }
    refreshStatus()
    report(publisher.publish(now: clock.now(), wallTime: clock.wallTime()))
  }

  /// Writes the status file now (start-up, reload, stop).
  func flushStatus() {
    refreshStatus()
    report(publisher.flush(now: clock.now(), wallTime: clock.wallTime()))
  }

  /// Copies the actor's state into the status document.
  func refreshStatus() {
    statusStale = false
    let figures = watcher.figures
    let queuedFolders = Set(queued.map(\.folder))
    let directories = roots.values.sorted { $0.path < $1.path }.map { root -> DirectoryStatus in
      var pending = root.pending
      for name in root.converting {
        pending[name] = queuedFolders.contains(root.folder(name)) ? "queued" : nil
      }
      let errors = [root.lastError, root.manifestError].compactMap { $0 }
      return DirectoryStatus(
        path: root.path, format: root.config.format.rawValue, dtype: root.config.dtype.rawValue,
        state: root.present ? .watching : (root.lastError == nil ? .missing : .error),
        counts: root.counts,
        pending: pending.keys.sorted().map {
          PendingCheckpoint(name: $0, reason: pending[$0] ?? "")
        },
        lastError: errors.isEmpty ? nil : errors.joined(separator: "; "),
        fileSystem: root.fileSystem.map { fs in
          WatchedFileSystem(
            type: fs.type, magic: fs.magicHex, mode: fs.mode.rawValue,
            pollSeconds: fs.mode == .poll ? root.config.pollSeconds : nil, reason: fs.reason)
        },
        lastPoll: root.lastPoll)
    }
    let inotify = InotifyStatus(
      watches: registry.count, overflows: figures.overflows, rescans: rescans)
    let problems = config.problems + (reloadError.map { [$0] } ?? [])
    let node = config.nodeName
    publisher.update { status in
      status.node = node
      status.directories = directories
      status.inotify = inotify
      status.problems = problems
    }
  }

  private func report(_ error: CheckpointError?) {
    guard let error else { return }
    logger.error("cannot write the status file: \(error.description)")
  }

  /// The one-line summary for `STATUS=` and the log.
  func summaryLine() -> String {
    let present = roots.values.filter(\.present).count
    let pending = roots.values.reduce(0) { $0 + $1.pending.count }
    let converted = roots.values.reduce(0) {
      $0 + ($1.counts[ManifestEvent.converted.rawValue] ?? 0)
    }
    let failed = roots.values.reduce(0) { $0 + ($1.counts[ManifestEvent.failed.rawValue] ?? 0) }
    var line =
      "watching \(present)/\(roots.count) dirs, \(running.count) converting, \(pending) pending"
    line += ", \(converted) converted, \(failed) failed"
    if !config.problems.isEmpty { line += ", \(config.problems.count) bad drop-in(s)" }
    return line
  }
}
