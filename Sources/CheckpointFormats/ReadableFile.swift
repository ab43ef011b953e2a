#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A read-only file descriptor read with `pread` at absolute offsets; never loaded whole.
///
/// Refuses to follow a symlink at the last path component only when asked (`noFollow`).
public final class ReadableFile: Sendable {
  /// The path as given, for error messages.
  public let path: String
  /// The descriptor; closed when the object goes away.
  public let fd: Int32
  /// The file's size when it was opened.
  public let size: Int64

  /// Opens `path` for reading. The corresponding C function is `open(2)` with `O_RDONLY|O_CLOEXEC`.
  public init(path: String, noFollow: Bool = false) throws {
    var flags = O_RDONLY | O_CLOEXEC
    if noFollow { flags |= O_NOFOLLOW }
    let fd = open(path, flags)
    if fd < 0 {
      let err = errno
      throw CheckpointError(.io, path: path, "cannot open: \(String(cString: strerror(err)))", errno: err)
    }
    var info = stat()
    if fstat(fd, &info) != 0 {
      let err = errno
      close(fd)
      throw CheckpointError(.io, path: path, "cannot stat: \(String(cString: strerror(err)))", errno: err)
    }
    if (info.st_mode & S_IFMT) != S_IFREG {
      close(fd)
      throw CheckpointError(.invalidFormat, path: path, "not a regular file")
    }
    // Weights are read front to back: ask for a larger read-ahead.
    _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    self.path = path
    self.fd = fd
    self.size = Int64(info.st_size)
  }

  deinit { close(fd) }

  /// Reads exactly `buffer.count` bytes at `offset`, or throws `.truncated` if the file ends first.
  /// The corresponding C function is `pread(2)`.
  public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
    var done = 0
    while done < buffer.count {
      guard let base = buffer.baseAddress else { return }
      let n = pread(fd, base + done, buffer.count - done, off_t(offset + Int64(done)))
      if n < 0 {
        let err = errno
        if err == EINTR { continue }
        throw CheckpointError(.io, path: path, "read failed: \(String(cString: strerror(err)))", errno: err)
      }
      if n == 0 {
        throw CheckpointError(
          .truncated, path: path, "file ends at byte \(offset + Int64(done)), expected \(buffer.count - done) more")
      }
      done += n
    }
  }

  /// Reads a small range into a new array (headers, pickles, zip records: never tensor data).
  public func readBytes(at offset: Int64, count: Int) throws -> [UInt8] {
    guard count >= 0, offset >= 0, offset <= size, Int64(count) <= size - offset else {
      throw CheckpointError(
        .truncated, path: path, "needs bytes \(offset)..<\(offset + Int64(count)) but the file has \(size)")
    }
    var bytes = [UInt8](repeating: 0, count: count)
    try bytes.withUnsafeMutableBytes { (raw) in try read(at: offset, into: raw) }
    return bytes
  }

  /// The current size on disk (a growing file), from `fstat(2)`.
  public func currentSize() -> Int64 {
    var info = stat()
    return fstat(fd, &info) == 0 ? Int64(info.st_size) : size
  }
}
