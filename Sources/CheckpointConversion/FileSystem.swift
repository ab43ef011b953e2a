import CLinux
import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

/// The few file-system calls the engine makes besides reading and writing weights, each wrapped once.
enum FileSystem {
  /// The extended attribute ckptd sets on every file it writes, so that a later run knows it may replace it.
  static let markerAttribute = "user.ckptd"

  /// A folder's access and modification times, to put back after files in it were created or renamed.
  struct FolderTimes {
    var path: String
    var times: [timespec]

    /// Reads the times with `stat(2)`; nil if the folder cannot be stat'ed.
    init?(path: String) {
      var info = stat()
      guard stat(path, &info) == 0 else { return nil }
      self.path = path
      self.times = [info.st_atim, info.st_mtim]
    }

    /// Puts the times back. The corresponding C function is `utimensat(2)`.
    func restore() {
      _ = times.withUnsafeBufferPointer { buffer in utimensat(AT_FDCWD, path, buffer.baseAddress, 0) }
    }
  }

  /// The permission bits of a file (0o644 if it cannot be stat'ed).
  static func permissions(of path: String) -> mode_t {
    var info = stat()
    guard stat(path, &info) == 0 else { return 0o644 }
    return info.st_mode & 0o777
  }

  /// True if something (file, folder, dangling symlink) exists at `path` (`lstat(2)`).
  static func exists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
  }

  /// True if `path` is a regular file that carries ckptd's marker attribute (`lgetxattr(2)`).
  static func isWrittenByCkptd(_ path: String) -> Bool {
    var info = stat()
    guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return false }
    return lgetxattr(path, markerAttribute, nil, 0) >= 0
  }

  /// Marks an open output as written by ckptd; best effort (`fsetxattr(2)`; some file systems refuse).
  static func markWrittenByCkptd(_ output: OutputFile) {
    output.descriptor.setAttribute(markerAttribute, value: "1")
  }

  /// Removes a file; errors other than "not there" are reported.
  static func remove(_ path: String) throws {
    if unlink(path) != 0 && errno != ENOENT {
      let err = errno
      throw CheckpointError(.io, path: path, "cannot remove: \(String(cString: strerror(err)))", errno: err)
    }
  }

  /// The names in a folder, without `.` and `..`; empty if it cannot be read (`opendir(3)`, `readdir(3)`).
  static func directoryEntries(_ path: String) -> [String] { DistributedFolder.names(path) ?? [] }

  /// Monotonic seconds, for timing.
  static func now() -> Double {
    var value = timespec()
    clock_gettime(CLOCK_MONOTONIC, &value)
    return Double(value.tv_sec) + Double(value.tv_nsec) / 1e9
  }
}
