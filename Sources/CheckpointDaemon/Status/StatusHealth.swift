import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Whether a status document describes a daemon that is running now.
public enum StatusHealth {
  /// With a watchdog the daemon rewrites the file at least every `heartbeat_seconds`; much older means hung or gone.
  public static let defaultStaleAfter: Double = 60

  /// nil when the daemon is alive and the document fresh, else a one-line reason (`ckptd status` exits 3).
  public static func problem(
    with snapshot: StatusSnapshot, now: Date = Date(), staleAfter: Double = defaultStaleAfter,
    isAlive: (Int32) -> Bool = StatusHealth.processIsAlive
  ) -> String? {
    if !isAlive(snapshot.pid) {
      return "ckptd (pid \(snapshot.pid)) is not running; the status file is from \(ISOTime.string(snapshot.updatedAt))"
    }
    // A daemon without a watchdog does not rewrite an unchanged document (no idle wake-ups): its age says nothing.
    guard let heartbeat = snapshot.heartbeatSeconds else { return nil }
    let age = now.timeIntervalSince(snapshot.updatedAt)
    if age > max(staleAfter, 3 * heartbeat) {
      return "the status file is stale: last updated \(StatusRenderer.duration(age)) ago (pid \(snapshot.pid) "
        + "may be hung)"
    }
    return nil
  }

  /// `kill(pid, 0)` succeeds or fails with EPERM (alive, other user's), and the process is not a zombie.
  public static func processIsAlive(_ pid: Int32) -> Bool {
    guard pid > 0 else { return false }
    if kill(pid, 0) != 0 && errno != EPERM { return false }
    if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    {
      let rest = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces)
      if rest.hasPrefix("Z") || rest.hasPrefix("X") { return false }
    }
    return true
  }
}
