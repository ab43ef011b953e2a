import CheckpointFormats
import Foundation

/// Every input of the daemon, delivered to its actor in one stream.
enum DaemonEvent: Sendable {
  /// From the inotify thread: an event on one of our watches, or a request to rescan.
  case watcher(WatcherMessage)
  /// The clock reached the next deadline (settle, stability re-check, retry, reload, status, watchdog, stop).
  case timer
  /// SIGTERM, SIGINT or `stop()`.
  case stop(reason: String)
  /// SIGHUP or `reload()`.
  case reload(reason: String)
  /// A conversion thread's progress.
  case progress(folder: String, done: Int64, total: Int64)
  /// A conversion thread finished (converted, failed, cancelled) at `end` (wall time).
  case finished(folder: String, result: Result<ConversionOutcome, any Error>, end: Date)
  /// An `exec_after` command of a converted checkpoint ended.
  case hookFinished(folder: String, outcome: ExecOutcome, end: Date)
}

/// What the daemon tells an observer (tests, benchmarks) after each input it handled.
public enum DaemonNote: Sendable, Equatable {
  /// Everything the last input caused is done; nothing happens before the next input or until `nextWake` has
  /// passed on the daemon's clock (nil: no deadline pending).
  case idle(nextWake: Duration?)
  /// The daemon stopped; `run()` returns.
  case stopped
}
