import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// SHA-256 of a file that is being appended to, computed on a second thread by reading back (from the page
/// cache) what has been written so far, so that hashing overlaps with reading and writing on another core.
///
/// The writer calls `advance(to:)` after each append; `finish()` waits for the thread to hash everything up
/// to the last position and returns the digest. What is hashed is what the file holds, not what the writer
/// meant to write.
final class BackgroundFileHasher: @unchecked Sendable {
  /// Bytes read back per `pread`.
  static let chunkSize = 4 << 20

  private let reader: FileDescriptor
  private let path: String
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private let condition: UnsafeMutablePointer<pthread_cond_t>
  private var thread = pthread_t()
  // Guarded by `mutex`.
  private var written: Int64 = 0
  private var finishing = false
  private var cancelled = false
  // Set by the thread before it exits; read after `pthread_join`.
  private var digest: String?
  private var joined = false

  /// Starts the thread, or returns nil (the caller then hashes in line) when the file cannot be opened for
  /// reading, the machine has one core, or the thread cannot start.
  init?(path: String) {
    guard sysconf(Int32(_SC_NPROCESSORS_ONLN)) > 1 else { return nil }
    guard let reader = try? FileDescriptor.open(checkpointPath: path, .readOnly, options: [.noFollow]) else {
      return nil
    }
    self.reader = reader
    self.path = path
    mutex = .allocate(capacity: 1)
    condition = .allocate(capacity: 1)
    pthread_mutex_init(mutex, nil)
    pthread_cond_init(condition, nil)
    let context = Unmanaged.passRetained(self).toOpaque()
    let started = pthread_create(
      &thread, nil,
      { context in
        guard let context else { return nil }
        let hasher = Unmanaged<BackgroundFileHasher>.fromOpaque(context).takeRetainedValue()
        hasher.run()
        return nil
      }, context)
    if started != 0 {
      Unmanaged<BackgroundFileHasher>.fromOpaque(context).release()
      joined = true
      return nil
    }
  }

  deinit {
    pthread_mutex_destroy(mutex)
    pthread_cond_destroy(condition)
    mutex.deallocate()
    condition.deallocate()
    try? reader.closeOnce(path: path)
  }

  /// Announces that the file now holds `position` bytes.
  func advance(to position: Int64) {
    pthread_mutex_lock(mutex)
    written = position
    pthread_cond_signal(condition)
    pthread_mutex_unlock(mutex)
  }

  /// Waits for everything announced to be hashed and returns the lowercase hex digest (nil if reading back
  /// failed). Call once, after the last append.
  func finish() -> String? {
    if !joined {
      pthread_mutex_lock(mutex)
      finishing = true
      pthread_cond_signal(condition)
      pthread_mutex_unlock(mutex)
      pthread_join(thread, nil)
      joined = true
    }
    return digest
  }

  /// Stops the thread without hashing the rest (the output is being thrown away).
  func cancel() {
    guard !joined else { return }
    pthread_mutex_lock(mutex)
    finishing = true
    cancelled = true
    pthread_cond_signal(condition)
    pthread_mutex_unlock(mutex)
    pthread_join(thread, nil)
    joined = true
  }

  private func run() {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkSize, alignment: 64)
    defer { buffer.deallocate() }
    var sha = StreamingSHA256()
    var hashed: Int64 = 0
    var ok = true
    pthread_mutex_lock(mutex)
    while true {
      while hashed == written && !finishing { pthread_cond_wait(condition, mutex) }
      if hashed == written || cancelled { break }
      let target = written
      pthread_mutex_unlock(mutex)
      while ok && hashed < target {
        let want = Int(Swift.min(Int64(buffer.count), target - hashed))
        let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want])
        guard let n = try? reader.readFully(at: hashed, into: chunk, path: path), n > 0 else {
          ok = false
          break
        }
        sha.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        hashed += Int64(n)
      }
      if !ok { hashed = target }
      pthread_mutex_lock(mutex)
    }
    pthread_mutex_unlock(mutex)
    digest = ok ? sha.hexDigest() : nil
  }
}
