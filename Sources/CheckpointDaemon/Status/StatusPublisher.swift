import CheckpointFormats
import Dispatch
import Foundation

/// Holds the daemon's `StatusSnapshot` and writes it to the status file, atomically and at most
/// `1 / minimumInterval` times a second: updates in between are coalesced into one deferred write.
///
/// Thread-safe: every call may come from any thread or task.
public final class StatusPublisher: @unchecked Sendable {
  /// The status file.
  public let path: String
  /// Seconds between two writes at least (0.25 s: four writes a second).
  public let minimumInterval: Double

  private let lock = NSLock()
  private let queue = DispatchQueue(label: "ckptd.status-publisher")
  private let onWrite: (@Sendable (StatusSnapshot) -> Void)?
  private var current: StatusSnapshot
  private var lastWrite: DispatchTime?
  private var pendingToken: UInt64?
  private var nextToken: UInt64 = 0
  private var writeCount = 0
  private var lastWriteError: CheckpointError?

  /// - Parameters:
  ///   - onWrite: called after every successful write with the document written (e.g. to send `STATUS=`).
  public init(
    path: String, initial: StatusSnapshot, minimumInterval: Double = 0.25,
    onWrite: (@Sendable (StatusSnapshot) -> Void)? = nil
  ) {
    self.path = path
    self.current = initial
    self.minimumInterval = minimumInterval
    self.onWrite = onWrite
  }

  /// The document as it stands (not necessarily written yet).
  public var snapshot: StatusSnapshot { lock.withLock { current } }

  /// Files written so far.
  public var writes: Int { lock.withLock { writeCount } }

  /// The last write's error, nil once a write succeeds again. The daemon logs it; it never stops the daemon.
  public var lastError: CheckpointError? { lock.withLock { lastWriteError } }

  /// Changes the document and schedules a write (now, or once `minimumInterval` has passed since the last one).
  public func update(_ mutate: (inout StatusSnapshot) -> Void) {
    lock.withLock { mutate(&current) }
    scheduleWrite()
  }

  /// Schedules a write with a fresh `updated_at` (the daemon calls this every few seconds as a heartbeat).
  public func refresh() {
    scheduleWrite()
  }

  /// Writes now, whatever the rate limit (start-up, state changes systemd should see, shutdown), and waits for it.
  public func flush() {
    queue.sync {
      lock.withLock { pendingToken = nil }
      writeNow()
    }
  }

  private func scheduleWrite() {
    let now = DispatchTime.now()
    let plan: (token: UInt64, at: DispatchTime)? = lock.withLock {
      if pendingToken != nil { return nil }
      nextToken += 1
      pendingToken = nextToken
      var at = now
      if let last = lastWrite {
        let earliest = last + minimumInterval
        if earliest > now { at = earliest }
      }
      return (nextToken, at)
    }
    guard let plan else { return }
    queue.asyncAfter(deadline: plan.at) { [self] in
      let due = lock.withLock {
        guard pendingToken == plan.token else { return false }
        pendingToken = nil
        return true
      }
      if due { writeNow() }
    }
  }

  /// Runs on `queue` only.
  private func writeNow() {
    let document: StatusSnapshot = lock.withLock {
      current.updatedAt = Date()
      lastWrite = DispatchTime.now()
      return current
    }
    do {
      try StatusFile.write(document, to: path)
      lock.withLock {
        writeCount += 1
        lastWriteError = nil
      }
      onWrite?(document)
    } catch let error as CheckpointError {
      lock.withLock { lastWriteError = error }
    } catch {
      lock.withLock { lastWriteError = CheckpointError(.io, path: path, "\(error)") }
    }
  }
}
