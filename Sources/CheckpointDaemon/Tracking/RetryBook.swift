import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

/// Remembers failed conversions: retryable ones (disk full, I/O) come back after an exponential backoff;
/// the others (a hostile pickle, a broken file) only once the source weight files change.
public struct RetryBook: Sendable {
  /// One remembered failure.
  public struct Entry: Sendable, Equatable {
    /// The source weight files' names, sizes and mtimes when it failed.
    public var fingerprint: String
    /// True when the failure may pass by itself.
    public var retryable: Bool
    /// Failures in a row.
    public var attempts: Int
    /// When a retryable failure may be tried again.
    public var notBefore: Double
    /// The one-line error.
    public var reason: String
  }

  /// First backoff delay in seconds.
  public var initialDelay: Double
  /// Longest backoff delay in seconds.
  public var maximumDelay: Double
  private var entries: [String: Entry] = [:]

  /// Creates an empty book (backoff 5 s doubling up to 5 min by default).
  public init(initialDelay: Double = 5, maximumDelay: Double = 300) {
    self.initialDelay = initialDelay
    self.maximumDelay = maximumDelay
  }

  /// The failure remembered for `folder`, if any.
  public func entry(for folder: String) -> Entry? { entries[folder] }

  /// Records a failure of `folder` whose sources had `fingerprint`.
  public mutating func recordFailure(_ folder: String, fingerprint: String, error: any Error, now: Double) {
    let retryable = Self.isRetryable(error)
    var attempts = 1
    if let old = entries[folder], old.fingerprint == fingerprint { attempts = old.attempts + 1 }
    let reason = (error as? CheckpointError)?.description ?? String(describing: error)
    entries[folder] = Entry(
      fingerprint: fingerprint, retryable: retryable, attempts: attempts,
      notBefore: now + delay(afterAttempts: attempts), reason: reason)
  }

  /// Why `folder` must not be converted now, or nil when it may be.
  public func hold(_ folder: String, fingerprint: String, now: Double) -> String? {
    guard let entry = entries[folder], entry.fingerprint == fingerprint else { return nil }
    if !entry.retryable { return "failed, not retried until its files change: \(entry.reason)" }
    if now < entry.notBefore {
      return "failed, retrying in \(Int((entry.notBefore - now).rounded(.up))) s: \(entry.reason)"
    }
    return nil
  }

  /// Forgets `folder` (converted, or gone).
  public mutating func clear(_ folder: String) { entries[folder] = nil }

  /// The backoff after `attempts` failures in a row: initial * 2^(attempts-1), capped.
  public func delay(afterAttempts attempts: Int) -> Double {
    var value = initialDelay
    for _ in 1..<max(attempts, 1) {
      value *= 2
      if value >= maximumDelay { break }
    }
    return min(value, maximumDelay)
  }

  /// Disk full, quota, I/O errors and files still growing may pass; format, safety and limit errors not.
  public static func isRetryable(_ error: any Error) -> Bool {
    guard let error = error as? CheckpointError else { return true }
    switch error.code {
    case .io:
      guard let code = error.errno else { return true }
      return [ENOSPC, EDQUOT, EIO, ENOMEM, EAGAIN, EMFILE, ENFILE, EINTR, EBUSY, ETIMEDOUT].contains(code)
    case .truncated: return true
    default: return false
    }
  }
}
