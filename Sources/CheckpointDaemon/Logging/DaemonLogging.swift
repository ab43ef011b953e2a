import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// Sets up swift-log for the daemon.
public enum DaemonLogging {
  /// Installs `DaemonLogHandler` as the process's log handler at `level`. Call once, early, in `ckptd run`.
  public static func bootstrap(level: Logger.Level) {
    LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, level: level) }
  }

  /// The swift-log level for a `log_level` name (`trace` ... `critical`; `warn` and `err` too), nil if unknown.
  public static func level(named name: String) -> Logger.Level? {
    switch name.lowercased() {
    case "warn": return .warning
    case "err": return .error
    default: return Logger.Level(rawValue: name.lowercased())
    }
  }

  /// True when standard error is the journal: `JOURNAL_STREAM` (`device:inode`) names stderr's `fstat(2)`.
  public static func stderrIsJournal(
    environment: [String: String] = ProcessInfo.processInfo.environment, descriptor: Int32 = 2
  ) -> Bool {
    guard let stream = environment["JOURNAL_STREAM"] else { return false }
    let parts = stream.split(separator: ":")
    guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
    var info = stat()
    guard fstat(descriptor, &info) == 0 else { return false }
    return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
  }
}
