import Foundation

/// The daemon's time: an injected `Clock` (a `TestClock` in tests) for every deadline, seen as the duration since
/// the daemon was created, and an injected wall-time source for timestamps (manifest, status) and for comparing
/// with file modification times.
struct DaemonClock: Sendable {
  /// Time on the clock since the daemon was created.
  let now: @Sendable () -> Duration
  /// Sleeps until `now()` reaches the offset (returns at once when it already has); throws when cancelled.
  let sleepUntil: @Sendable (Duration) async throws -> Void
  /// The wall time.
  let wallTime: @Sendable () -> Date

  init<C: Clock<Duration>>(_ clock: C, wallTime: @escaping @Sendable () -> Date) {
    let origin = clock.now
    now = { origin.duration(to: clock.now) }
    sleepUntil = { offset in
      // A deadline already reached does not wait (a manual clock may have moved before this task ran).
      if origin.duration(to: clock.now) >= offset { return }
      try await clock.sleep(until: origin.advanced(by: offset), tolerance: nil)
    }
    self.wallTime = wallTime
  }

  /// Wall time as seconds since 1970 (what file mtimes are compared with).
  var wallSeconds: Double { wallTime().timeIntervalSince1970 }

  /// Clock time as seconds (retry backoff).
  var seconds: Double { Self.seconds(now()) }

  static func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
  }
}
