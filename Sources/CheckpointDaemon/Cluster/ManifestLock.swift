import CheckpointConversion
import CheckpointFormats
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The lock every manifest change is made under, git's `index.lock` pattern: a file `<manifest>.lock.<generation>`
/// created with O_CREAT|O_EXCL beside the manifest. O_APPEND alone is not atomic across NFS clients or FUSE
/// mounts; whole lines are, when only the lock holder opens and writes the manifest and fsyncs it before
/// releasing. A lock seen unchanged for `ttl` on the waiter's own monotonic clock (or held by a dead process of
/// this boot) is stale and taken over with a higher generation, exactly like a checkpoint claim.
public struct ManifestLock: Sendable {
  /// The manifest the lock guards.
  public let manifestPath: String
  private var book: ClaimBook
  private let clock: any Clock<Duration>

  /// The lock files' name prefix for `manifestPath`: `<manifest file name>.lock.`.
  public static func prefix(for manifestPath: String) -> String {
    OutputFile.split(manifestPath).1 + ".lock."
  }

  public init(manifestPath: String, identity: ClaimIdentity, ttl: Duration, clock: any Clock<Duration>) {
    self.manifestPath = manifestPath
    self.clock = clock
    self.book = ClaimBook(
      identity: identity, ttl: ttl, clock: clock, prefix: ManifestLock.prefix(for: manifestPath))
  }

  /// The folder the manifest (and its lock) live in.
  public var folder: String {
    let dir = OutputFile.split(manifestPath).0
    return dir.isEmpty ? "." : dir
  }

  /// One attempt: the lock, or who holds it.
  public mutating func tryLock() throws -> ClaimOutcome {
    try book.tryAcquire(folder: folder)
  }

  /// Waits for the lock (retrying every `retry` on the clock; a stale lock is taken over after `ttl`), runs
  /// `body` while it is held, and releases it. `body` must finish its writes with fsync: the lock is released
  /// as soon as it returns. Throws `.cancelled` if the task is cancelled while waiting.
  public mutating func withLock<T>(retry: Duration = .milliseconds(20), _ body: () throws -> T) async throws -> T {
    while true {
      switch try tryLock() {
      case .acquired(let lock, _):
        defer { lock.release() }
        guard lock.isCurrent() else { continue }
        return try body()
      case .held:
        do {
          try await clock.sleep(for: retry)
        } catch {
          throw CheckpointError(.cancelled, path: manifestPath, "cancelled while waiting for the manifest lock")
        }
      }
    }
  }

  /// Appends `line` (one whole JSON record, no newline) to the manifest under the lock, with a newline first if
  /// the file ends in a torn line, and fsyncs it before the lock is released.
  public mutating func append(line: [UInt8]) async throws {
    let path = manifestPath
    try await withLock {
      try ManifestLock.appendLocked(path: path, lines: line + [0x0A])
    }
  }

  /// The write itself: `lines` (whole records, each ending in a newline) in one write and one fsync; only call
  /// while holding the lock.
  static func appendLocked(path: String, lines: [UInt8]) throws {
    let existed = access(path, F_OK) == 0
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
    guard fd >= 0 else { throw ManifestLock.ioError(path, "cannot open the manifest") }
    defer { close(fd) }
    // Opened after the lock was taken: on NFS close-to-open consistency makes this size the current one.
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw ManifestLock.ioError(path, "cannot stat the manifest") }
    var offset = off_t(info.st_size)
    var bytes: [UInt8] = []
    if offset > 0 {
      var last: UInt8 = 0
      guard pread(fd, &last, 1, offset - 1) == 1 else { throw ManifestLock.ioError(path, "cannot read the manifest") }
      if last != 0x0A { bytes.append(0x0A) }
    }
    bytes.append(contentsOf: lines)
    try bytes.withUnsafeBytes { raw in
      var done = 0
      while done < raw.count {
        guard let base = raw.baseAddress else { return }
        let n = pwrite(fd, base + done, raw.count - done, offset)
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw ManifestLock.ioError(path, "cannot write the manifest") }
        done += n
        offset += off_t(n)
      }
    }
    guard fsync(fd) == 0 else { throw ManifestLock.ioError(path, "cannot fsync the manifest") }
    if !existed { OutputFile.syncDirectory(OutputFile.split(path).0) }
  }

  static func ioError(_ path: String, _ what: String) -> CheckpointError {
    let err = errno
    return CheckpointError(.io, path: path, "\(what): \(String(cString: strerror(err)))", errno: err)
  }
}
