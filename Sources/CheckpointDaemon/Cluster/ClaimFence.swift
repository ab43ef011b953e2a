import CheckpointFormats

/// What a conversion asks of its claim while it runs: `isLost()` between chunks, which re-reads the claim file
/// at most once per `interval` (a read per chunk would cost a network round trip per megabyte on NFS), and
/// `isCurrent()` right before it commits, which always reads it.
public final class ClaimFence: Sendable {
  private let claim: Claim
  private let interval: Duration
  private let stopwatch: Stopwatch
  private let last = Mutexed<(at: Duration, lost: Bool)?>(nil)

  /// - Parameter clock: the clock `interval` is measured on (the daemon's; `ContinuousClock` for `ckptd convert`).
  public init(_ claim: Claim, clock: any Clock<Duration>, interval: Duration = .milliseconds(250)) {
    self.claim = claim
    self.interval = interval
    self.stopwatch = Stopwatch(clock: clock)
  }

  /// Whether the claim was taken over, as of a look at most `interval` old.
  public func isLost() -> Bool {
    let now = stopwatch.elapsed
    if let seen = last.withLock({ $0 }), seen.lost || now - seen.at < interval { return seen.lost }
    let lost = !claim.isCurrent()
    last.withLock { $0 = (now, lost) }
    return lost
  }

  /// Whether the claim is still ours, read now.
  public func isCurrent() -> Bool {
    let current = claim.isCurrent()
    if !current { last.withLock { $0 = (stopwatch.elapsed, true) } }
    return current
  }
}
