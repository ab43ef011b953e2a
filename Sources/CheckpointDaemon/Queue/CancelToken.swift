import Synchronization

/// Asks a running conversion to stop; checked by the engine between chunks.
public final class CancelToken: Sendable {
  private let flag = Atomic<Bool>(false)

  /// A token not yet cancelled.
  public init() {}

  /// Requests cancellation.
  public func cancel() { flag.store(true, ordering: .releasing) }

  /// True once `cancel()` was called.
  public var isCancelled: Bool { flag.load(ordering: .acquiring) }
}
