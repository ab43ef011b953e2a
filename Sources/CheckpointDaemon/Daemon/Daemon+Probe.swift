/// Read-only views of the actor's state (tests, diagnostics), and one way to lose a watch on purpose.
extension Daemon {
  /// Full rescans so far and whether `folder` is tracked, read together.
  func probe(_ folder: String) -> (rescans: Int, tracked: Bool, due: Bool) {
    let tracked = roots.values.contains { $0.tracker.isTracking(folder) }
    return (rescans, tracked, folderDue[folder] != nil)
  }

  /// The clock time left until the next deadline, nil when the daemon waits only for inputs.
  var nextWake: Duration? { armedDeadline.map { max($0 - clock.now(), .zero) } }

  /// Drops the watch on `root`, as a lost watch would (tests of the rescan).
  func loseWatch(of root: String) {
    registry.release(.root(root), watcher: watcher)
  }

  /// The time to the next deadline and the conversions running or queued, read together.
  var pendingWork: (nextWake: Duration?, conversions: Int) { (nextWake, conversions) }

  /// Conversions running or queued, and `exec_after` commands running.
  var conversions: Int { running.count + queued.count + hooks.count }

  /// `exec_after` commands running.
  var hookCount: Int { hooks.count }

  /// Live inotify watches owned by the daemon.
  var watchCount: Int { registry.count }

  /// Whether the running conversion of `folder` lost its claim to another instance.
  func claimLost(_ folder: String) -> Bool { running[folder]?.claimLost ?? false }
}
