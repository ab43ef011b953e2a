import CheckpointFormats
import Foundation

/// Holds the daemon's `StatusSnapshot` and decides when to write it to the status file: atomically, and at
/// most once per `minimumInterval` (updates in between are coalesced into one deferred write).
///
/// A value owned by the daemon's actor; time comes from the caller (the daemon's clock), so nothing here
/// sleeps, polls or reads a clock by itself.
public struct StatusPublisher: Sendable {
  /// The status file.
  public let path: String
  /// Time between two writes at least (0.25 s: four writes a second).
  public let minimumInterval: Duration
  /// How long a failed write waits before the next attempt (a broken status folder must not spin).
  public let retryInterval: Duration

  /// The document as it stands (not necessarily written yet).
  public private(set) var snapshot: StatusSnapshot
  /// Files written so far.
  public private(set) var writes = 0
  /// The last write's error, nil once a write succeeds again.
  public private(set) var lastError: CheckpointError?
  private var dirty = true
  private var lastWrite: Duration?
  private var lastFailure: Duration?
  let rename: @Sendable (String, String) -> Int32

  /// - Parameter rename: `rename(2)` (tests replace it to make the last step fail).
  public init(
    path: String, initial: StatusSnapshot, minimumInterval: Duration = .milliseconds(250),
    retryInterval: Duration = .seconds(5)
  ) {
    self.init(
      path: path, initial: initial, minimumInterval: minimumInterval, retryInterval: retryInterval,
      rename: { Glibc.rename($0, $1) })
  }

  init(
    path: String, initial: StatusSnapshot, minimumInterval: Duration, retryInterval: Duration,
    rename: @escaping @Sendable (String, String) -> Int32
  ) {
    self.path = path
    self.snapshot = initial
    self.minimumInterval = minimumInterval
    self.retryInterval = retryInterval
    self.rename = rename
  }

  /// True when the document changed since the last write.
  public var isDirty: Bool { dirty }

  /// The earliest clock time the rate limit allows the next write.
  public var earliestWrite: Duration {
    var due = lastWrite.map { $0 + minimumInterval } ?? .zero
    if let failed = lastFailure { due = max(due, failed + retryInterval) }
    return due
  }

  /// When the pending write is due (clock time), nil when nothing waits.
  public var nextWrite: Duration? {
    dirty ? earliestWrite : nil
  }

  /// Changes the document; a change is written by the next `publish`.
  public mutating func update(_ mutate: (inout StatusSnapshot) -> Void) {
    let before = snapshot
    mutate(&snapshot)
    if snapshot != before { dirty = true }
  }

  /// Asks for a rewrite of an unchanged document (the heartbeat: a fresh `updated_at`).
  public mutating func touch() { dirty = true }

  /// Writes when something changed and the rate limit allows; returns the error of a write that failed.
  @discardableResult
  public mutating func publish(now: Duration, wallTime: Date) -> CheckpointError? {
    guard let due = nextWrite, due <= now else { return nil }
    return write(now: now, wallTime: wallTime)
  }

  /// Writes now, whatever the rate limit (start-up, state changes systemd should see, shutdown).
  @discardableResult
  public mutating func flush(now: Duration, wallTime: Date) -> CheckpointError? {
    write(now: now, wallTime: wallTime)
  }

  private mutating func write(now: Duration, wallTime: Date) -> CheckpointError? {
    snapshot.updatedAt = wallTime
    lastWrite = now
    do {
      try StatusFile.write(snapshot, to: path, rename: rename)
      writes += 1
      lastError = nil
      lastFailure = nil
      dirty = false
      // The failure is in the file now; the next write drops it.
      snapshot.statusWriteError = nil
      return nil
    } catch {
      let failure = error as? CheckpointError ?? CheckpointError(.io, path: path, "\(error)")
      lastError = failure
      lastFailure = now
      snapshot.statusWriteError = "\(ISOTime.string(wallTime)): \(failure.description)"
      dirty = true
      return failure
    }
  }
}
