#if canImport(Glibc)
  import Glibc
#endif

/// A value behind a `pthread_mutex_t`: `withLock` as Synchronization's `Mutex` has it.
///
/// Why not `Synchronization.Mutex`: on Linux its lock and unlock live in the Swift runtime, which is not built
/// with ThreadSanitizer, so TSan cannot see them and reports every pair of locked accesses from two threads as
/// a race (seen in `make tsan` on InotifyEngine's state). pthread mutexes are intercepted by TSan, so a real race
/// is still reported and a locked access is not.
public final class Mutexed<Value>: @unchecked Sendable {  // C boundary: the pthread mutex guards `value`.
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private var value: Value

  public init(_ value: Value) {
    self.value = value
    mutex = .allocate(capacity: 1)
    mutex.initialize(to: pthread_mutex_t())
    pthread_mutex_init(mutex, nil)
  }

  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deinitialize(count: 1)
    mutex.deallocate()
  }

  /// Runs `body` with the value while holding the lock.
  public func withLock<Result, Failure: Error>(
    _ body: (inout sending Value) throws(Failure) -> sending Result
  ) throws(Failure) -> sending Result {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body(&value)
  }
}
