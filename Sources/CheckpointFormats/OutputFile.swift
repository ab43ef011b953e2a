import CLinux
import Glibc
import SystemPackage

/// A file created "transactionally": written under a temporary name in its final folder and renamed
/// into place only by `commit()`. Until then nothing exists under the final name; `abandon()` (or a
/// thrown error followed by deinit) removes the temporary.
///
/// The temporary is created with `O_CREAT|O_EXCL|O_NOFOLLOW`, so a planted file or symlink cannot
/// redirect the write. Its name starts with `OutputFile.temporaryPrefix` so that a restart can find and
/// remove leftovers of an interrupted run.
public final class OutputFile {
  /// Every temporary ckptd creates starts with this prefix.
  public static let temporaryPrefix = ".ckptd-tmp."

  /// The final path.
  public let path: String
  /// The temporary path the data goes to until `commit()`.
  public let temporaryPath: String
  /// The descriptor of the temporary file; closed exactly once (by `commit`, `abandon` or deinit).
  package let descriptor: FileDescriptor
  /// The raw descriptor, for the C calls of other modules.
  public var fd: Int32 { descriptor.rawValue }
  /// Bytes written so far (the sequential write position).
  public private(set) var position: Int64 = 0
  private var finished = false
  /// Everything before this offset has been handed to the disk (`ckptd_start_writeback`).
  private var writebackStart: Int64 = 0
  /// Dirty bytes after which writeback of them starts (overlapping the disk with the conversion).
  static let writebackWindow: Int64 = 16 << 20
  private var hasher: StreamingSHA256?
  /// Hashes on a second core by reading the temporary back; `hasher` is the in-line fallback.
  private var background: BackgroundFileHasher?

  /// Creates the temporary for `path` with `mode` permission bits.
  public init(path: String, mode: mode_t = 0o644, sha256: Bool = false) throws {
    let (dir, base) = OutputFile.split(path)
    var random = SystemRandomNumberGenerator()
    let tag = String(random.next() as UInt64, radix: 36)
    let temporary = (dir.isEmpty ? "" : dir + "/") + OutputFile.temporaryPrefix + base + "." + tag
    let descriptor = try FileDescriptor.open(
      checkpointPath: temporary, .writeOnly, options: [.create, .exclusiveCreate, .noFollow],
      permissions: FilePermissions(rawValue: mode), action: "cannot create \(temporary)", errorPath: path)
    // The umask may have narrowed the bits; set them as asked.
    descriptor.setPermissions(mode)
    self.path = path
    self.temporaryPath = temporary
    self.descriptor = descriptor
    if sha256 {
      self.background = BackgroundFileHasher(path: temporary)
      if background == nil { self.hasher = StreamingSHA256() }
    }
  }

  /// The lowercase hex SHA-256 of everything appended so far, if the file was opened with `sha256: true`.
  /// Call it once the last byte is appended: the hash is computed on a second thread, which this ends.
  public func sha256Hex() -> String? {
    if let background { return background.finish() }
    return hasher?.hexDigest()
  }

  deinit {
    background?.cancel()
    if !finished {
      try? descriptor.closeOnce(path: temporaryPath)
      unlink(temporaryPath)
    }
  }

  /// Appends all of `bytes`. The corresponding C function is `write(2)`.
  public func write(_ bytes: UnsafeRawBufferPointer) throws {
    try descriptor.writeFully(bytes, path: path)
    hasher?.update(bytes)
    appended(bytes.count)
  }

  /// Moves the append position past `count` new bytes: wakes the background hasher and starts the disk
  /// writing back what has piled up.
  private func appended(_ count: Int) {
    position += Int64(count)
    background?.advance(to: position)
    if position - writebackStart >= OutputFile.writebackWindow {
      descriptor.startWriteback(offset: writebackStart, count: position - writebackStart)
      writebackStart = position
    }
  }

  /// Whether `copy(from:...)` may be used: the bytes need not pass through this process (no in-line hash).
  public var canCopyInKernel: Bool { hasher == nil }

  /// Appends `count` bytes of `file` starting at `offset`, copied by the kernel (`copy_file_range(2)`)
  /// without passing through this process; falls back to `pread`/`write` through `scratch` where the
  /// kernel cannot. Calls `progress` after each piece. Only when `canCopyInKernel`.
  public func copy(
    from file: ReadableFile, offset: Int64, count: Int64, scratch: UnsafeMutableRawBufferPointer,
    progress: (Int) throws -> Void
  ) throws {
    var done: Int64 = 0
    var kernel = canCopyInKernel
    while done < count {
      let want = Swift.min(count - done, OutputFile.writebackWindow)
      if kernel {
        // The output side uses (and advances) the descriptor's own offset, where `write` appends next.
        var from = offset + done
        switch descriptor.copyRange(from: file.descriptor, offset: &from, count: Int(want)) {
        case .success(0):
          throw CheckpointError(.truncated, path: file.path, "file ends at byte \(offset + done), expected more")
        case .success(let n):
          file.didRead(offset: offset + done, count: Int64(n))
          done += Int64(n)
          appended(n)
          try progress(n)
          continue
        case .failure(let error):
          guard [Errno.improperLink, .noFunction, .invalidArgument, .notSupported, .badFileDescriptor].contains(error)
          else { throw CheckpointError.io("copy failed", path: path, error) }
          kernel = false
        }
      }
      let n = Int(Swift.min(want, Int64(scratch.count)))
      let chunk = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<n])
      try file.read(at: offset + done, into: chunk)
      try write(UnsafeRawBufferPointer(chunk))
      done += Int64(n)
      try progress(n)
    }
  }

  /// Appends an array of bytes (headers and records, not tensor data).
  public func write(_ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { (raw) in try write(raw) }
  }

  /// Overwrites bytes at an absolute offset without moving the append position (not hashed: do not use
  /// on a file opened with `sha256: true`). The corresponding C function is `pwrite(2)`.
  public func write(_ bytes: [UInt8], at offset: Int64) throws {
    try bytes.withUnsafeBytes { (raw) in try descriptor.writeFully(raw, at: offset, path: path) }
  }

  /// fsyncs the data, renames the temporary over the final name and fsyncs the folder.
  /// With `replace == false` an existing file under the final name is an `.exists` error
  /// (`renameat2(RENAME_NOREPLACE)`; where the file system refuses that flag with EINVAL or ENOSYS, as FUSE
  /// mounts and NFS do, `link(2)` + `unlink(2)`, which refuses to replace just the same).
  public func commit(replace: Bool = false) throws {
    if fsync(fd) != 0 {
      let err = errno
      throw CheckpointError(.io, path: path, "fsync failed: \(String(cString: strerror(err)))", errno: err)
    }
    // The data is on disk now: drop it from the page cache, which a training job next to us needs more.
    _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    if close(fd) != 0 {
      let err = errno
      finished = true
      unlink(temporaryPath)
      throw CheckpointError(.io, path: path, "close failed: \(String(cString: strerror(err)))", errno: err)
    }
    finished = true
    var result = replace ? rename(temporaryPath, path) : ckptd_rename_noreplace(temporaryPath, path)
    var err = result == 0 ? 0 : errno
    var call = "rename"
    if !replace && result != 0 && (err == EINVAL || err == ENOSYS) {
      // No rename flags here: a hard link cannot replace either. The temporary goes once the link exists.
      call = "link"
      result = link(temporaryPath, path)
      err = result == 0 ? 0 : errno
      // NFS may answer a retransmitted LINK whose first reply was lost with EEXIST: then both names are one file.
      var linked = stat()
      var existing = stat()
      if result != 0 && err == EEXIST && stat(temporaryPath, &linked) == 0 && stat(path, &existing) == 0
        && linked.st_dev == existing.st_dev && linked.st_ino == existing.st_ino
      {
        result = 0
      }
      unlink(temporaryPath)
    } else if result != 0 {
      unlink(temporaryPath)
    }
    if result != 0 {
      if err == EEXIST {
        throw CheckpointError(.exists, path: path, "already exists; not overwritten", errno: err)
      }
      throw CheckpointError(.io, path: path, "\(call) failed: \(String(cString: strerror(err)))", errno: err)
    }
    OutputFile.syncDirectory(OutputFile.split(path).0)
  }

  /// Drops the pages of the temporary that are already written back from the page cache (dirty pages stay
  /// until `commit` fsyncs and drops them all).
  public func releaseCache() {
    guard !finished else { return }
    descriptor.advise(POSIX_FADV_DONTNEED)
  }

  /// Closes and removes the temporary; nothing appears under the final name.
  public func abandon() {
    background?.cancel()
    guard !finished else { return }
    finished = true
    try? descriptor.closeOnce(path: temporaryPath)
    unlink(temporaryPath)
  }

  /// fsyncs a folder so that renames in it are durable.
  public static func syncDirectory(_ dir: String) {
    let folder = dir.isEmpty ? "." : dir
    guard let descriptor = try? FileDescriptor.open(checkpointPath: folder, .readOnly, options: [.directory])
    else { return }
    try? descriptor.synchronize(path: folder)
    try? descriptor.closeOnce(path: folder)
  }

  /// Splits a path into folder and last component.
  public static func split(_ path: String) -> (String, String) {
    guard let slash = path.lastIndex(of: "/") else { return ("", path) }
    let dir = String(path[..<slash])
    return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
  }
}
