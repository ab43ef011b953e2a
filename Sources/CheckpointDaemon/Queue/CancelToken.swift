/// Asks a running conversion to stop; checked by the engine between chunks.
public final class CancelToken: Sendable {
  private let flag = Locked(false)

  /// A token not yet cancelled.
  public init() {}

  /// Requests cancellation.
  public func cancel() { flag.withLock { $0 = true } }

  /// True once `cancel()` was called.
  public var isCancelled: Bool { flag.current }
}
