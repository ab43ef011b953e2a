import CLinux
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

// The one place where the formats and conversion code make system calls on file descriptors. Every call goes
// through swift-system's `FileDescriptor`: its own calls retry on EINTR (`retryOnInterrupt` defaults to true),
// the Linux calls it lacks go through `retryingOnInterrupt` below, and every failure becomes a
// `CheckpointError(.io)` that names the file. `close` is never retried (Linux closes the descriptor even when
// close(2) reports EINTR); the owners (`ReadableFile`, `OutputFile`) close exactly once.

extension CheckpointError {
  /// An `.io` error on `path`: "<action>: <strerror>".
  package static func io(_ action: String, path: String, _ error: Errno) -> CheckpointError {
    CheckpointError(.io, path: path, "\(action): \(String(cString: strerror(error.rawValue)))", errno: error.rawValue)
  }
}

/// Calls `body`, a C call that returns -1 and sets errno on failure, again as long as it fails with EINTR.
package func retryingOnInterrupt<I: FixedWidthInteger>(_ body: () -> I) -> Result<I, Errno> {
  while true {
    let value = body()
    if value != -1 { return .success(value) }
    let error = Errno(rawValue: Glibc.errno)
    if error != .interrupted { return .failure(error) }
  }
}

extension FileDescriptor {
  /// Opens `path` (always `O_CLOEXEC`); a failure is an `.io` error naming `errorPath` (by default `path`),
  /// "<action>: <reason>".
  package static func open(
    checkpointPath path: String, _ mode: AccessMode, options: OpenOptions = [], permissions: FilePermissions? = nil,
    action: String = "cannot open", errorPath: String? = nil
  ) throws -> FileDescriptor {
    do {
      return try path.withCString { name in
        try FileDescriptor.open(name, mode, options: options.union(.closeOnExec), permissions: permissions)
      }
    } catch let error as Errno {
      throw CheckpointError.io(action, path: errorPath ?? path, error)
    }
  }

  /// Reads at `offset` until `buffer` is full or the file ends; returns the bytes read (`pread(2)`).
  package func readFully(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer, path: String) throws -> Int {
    var done = 0
    while done < buffer.count {
      let n: Int
      do {
        n = try read(
          fromAbsoluteOffset: offset + Int64(done), into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
      } catch let error as Errno {
        throw CheckpointError.io("read failed", path: path, error)
      }
      if n == 0 { break }
      done += n
    }
    return done
  }

  /// Writes all of `bytes` at the descriptor's offset (`write(2)`).
  package func writeFully(_ bytes: UnsafeRawBufferPointer, path: String) throws {
    var done = 0
    while done < bytes.count {
      do {
        done += try write(UnsafeRawBufferPointer(rebasing: bytes[done...]))
      } catch let error as Errno {
        throw CheckpointError.io("write failed", path: path, error)
      }
    }
  }

  /// Writes all of `bytes` at `offset` without moving the descriptor's offset (`pwrite(2)`).
  package func writeFully(_ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String) throws {
    var done = 0
    while done < bytes.count {
      do {
        done += try write(
          toAbsoluteOffset: offset + Int64(done), UnsafeRawBufferPointer(rebasing: bytes[done...]))
      } catch let error as Errno {
        throw CheckpointError.io("write failed", path: path, error)
      }
    }
  }

  /// The file's type and size (`fstat(2)`).
  package func status(path: String) throws -> (isRegular: Bool, size: Int64) {
    do {
      let info = try stat()
      return (info.type == .regular, info.size)
    } catch {
      throw CheckpointError.io("cannot stat", path: path, error)
    }
  }

  /// Flushes the file's data and metadata to the disk (`fsync(2)`).
  package func synchronize(path: String) throws {
    if case .failure(let error) = retryingOnInterrupt({ fsync(rawValue) }) {
      throw CheckpointError.io("fsync failed", path: path, error)
    }
  }

  /// Closes the descriptor; call once. Not retried: Linux has closed it even when close(2) reports EINTR.
  package func closeOnce(path: String) throws {
    do {
      try close()
    } catch let error as Errno {
      throw CheckpointError.io("close failed", path: path, error)
    }
  }

  /// Page-cache advice for a range (`posix_fadvise(2)`, which returns its error instead of setting errno).
  /// Best effort: advice changes no data. A `count` of 0 means "to the end of the file".
  package func advise(_ advice: Int32, offset: Int64 = 0, count: Int64 = 0) {
    _ = posix_fadvise(rawValue, off_t(offset), off_t(count), advice)
  }

  /// Starts writing back a range of dirty pages without waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`).
  /// Best effort: the final fsync is what makes the data durable.
  package func startWriteback(offset: Int64, count: Int64) {
    _ = retryingOnInterrupt { ckptd_start_writeback(rawValue, offset, count) }
  }

  /// Copies up to `count` bytes of `source` from `offset` (advanced) to this descriptor's offset, in the kernel
  /// (`copy_file_range(2)`). Returns the bytes copied (0 at the end of the source) or the error.
  package func copyRange(from source: FileDescriptor, offset: inout Int64, count: Int) -> Result<Int, Errno> {
    var from = offset
    let result = retryingOnInterrupt { ckptd_copy_file_range(source.rawValue, &from, rawValue, nil, count) }
    offset = from
    return result.map { Int($0) }
  }

  /// Sets the permission bits (`fchmod(2)`); best effort, as `open` already applied them less the umask.
  package func setPermissions(_ mode: mode_t) {
    _ = retryingOnInterrupt { fchmod(rawValue, mode) }
  }

  /// Sets an extended attribute (`fsetxattr(2)`); returns false if the file system refuses.
  @discardableResult
  package func setAttribute(_ name: String, value: String) -> Bool {
    let result = retryingOnInterrupt {
      value.withCString { bytes in fsetxattr(rawValue, name, bytes, strlen(bytes), 0) }
    }
    if case .success = result { return true }
    return false
  }

  /// Which pages of `count` bytes at the page-aligned `offset` are in the page cache (`mmap` + `mincore(2)`):
  /// one byte per page in `vector`, bit 0 set when resident. False if the kernel cannot say (no mapping).
  package func residentPages(offset: Int64, count: Int, into vector: UnsafeMutableBufferPointer<UInt8>) -> Bool {
    guard let base = vector.baseAddress else { return count == 0 }
    if case .success = retryingOnInterrupt({ ckptd_resident_pages(rawValue, offset, count, base) }) { return true }
    return false
  }
}
