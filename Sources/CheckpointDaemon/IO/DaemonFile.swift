import CheckpointFormats
import Foundation
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// The daemon's one file-descriptor layer: swift-system's `FileDescriptor` (EINTR retried, `closeAfter` closes
/// exactly once), with every failure turned into `CheckpointError(.io, path:, message, errno:)`.
enum DaemonFile {
  /// Opens `path`; the error names the path and says `what` was being done.
  static func open(
    _ path: String, _ mode: FileDescriptor.AccessMode, options: FileDescriptor.OpenOptions = [],
    permissions: FilePermissions? = nil, what: String
  ) throws -> FileDescriptor {
    do {
      return try FileDescriptor.open(
        FilePath(path), mode, options: options.union(.closeOnExec), permissions: permissions,
        retryOnInterrupt: true)
    } catch {
      throw wrap(error, path: path, what)
    }
  }

  /// Runs `body`, turning an `Errno` it throws into a `CheckpointError` about `path`.
  static func attempt<T>(_ path: String, _ what: String, _ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch {
      throw wrap(error, path: path, what)
    }
  }

  /// A `CheckpointError` for `error` (an `Errno`, or already a `CheckpointError`).
  static func wrap(_ error: any Error, path: String, _ what: String) -> CheckpointError {
    if let error = error as? CheckpointError { return error }
    if let error = error as? Errno { return failure(error.rawValue, path: path, what) }
    return CheckpointError(.io, path: path, "\(what): \(error)")
  }

  /// A `CheckpointError` for the C error number `code`.
  static func failure(_ code: Int32, path: String, _ what: String) -> CheckpointError {
    CheckpointError(.io, path: path, "\(what): \(String(cString: strerror(code)))", errno: code)
  }

  /// Reads the whole file; nil when it does not exist. On NFS a file replaced by rename on another client can
  /// fail with ESTALE (or vanish for a moment between lookup and open): those are retried a few times with a
  /// fresh lookup before the file counts as missing or the error is reported (DESIGN.md: readers retry
  /// ENOENT/ESTALE).
  static func readWhole(_ path: String, what: String) throws -> [UInt8]? {
    var attempt = 0
    while true {
      attempt += 1
      do {
        return try readWholeOnce(path, what: what)
      } catch let error as CheckpointError where error.errno == ESTALE && attempt < 5 {
        continue
      } catch let error as CheckpointError where error.errno == ENOENT {
        // Opened, then gone while reading (replaced): look again; a file that stays gone is missing.
        if attempt < 5 { continue }
        return nil
      }
    }
  }

  private static func readWholeOnce(_ path: String, what: String) throws -> [UInt8]? {
    let fd: FileDescriptor
    do {
      fd = try FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec, retryOnInterrupt: true)
    } catch Errno.noSuchFileOrDirectory {
      return nil
    } catch {
      throw wrap(error, path: path, "cannot open \(what)")
    }
    return try attempt(path, "cannot read \(what)") {
      try fd.closeAfter {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
          let got = try chunk.withUnsafeMutableBytes { try fd.read(into: $0, retryOnInterrupt: true) }
          if got == 0 { break }
          result.append(contentsOf: chunk[0..<got])
        }
        return result
      }
    }
  }
}

extension DaemonFile {
  /// Replaces `path` with `bytes` atomically: a temporary in the same folder (O_EXCL, mode 0644 whatever the
  /// umask), then `rename`, so a reader sees the old content or the new, never a part. The
  /// temporary's descriptor is closed exactly once, before the rename, whatever fails; the temporary is
  /// removed on failure. `rename` is replaceable so that tests can make the last step fail.
  static func replace(
    _ path: String, with bytes: [UInt8], what: String,
    rename: (String, String) -> Int32 = { Glibc.rename($0, $1) }
  ) throws {
    let folder = (path as NSString).deletingLastPathComponent
    let name = (path as NSString).lastPathComponent
    let temp = (folder.isEmpty ? "" : folder + "/") + ".\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd = try open(
      temp, .writeOnly, options: [.create, .exclusiveCreate, .noFollow],
      permissions: [.ownerReadWrite, .groupRead, .otherRead], what: "cannot create \(what)")
    do {
      try attempt(temp, "cannot write \(what)") {
        try fd.closeAfter {
          _ = try fd.writeAll(bytes)
          // umask may have narrowed the mode; readers (`ckptd status`, a metrics collector) run as other users.
          _ = fchmod(fd.rawValue, 0o644)
        }
      }
      guard rename(temp, path) == 0 else {
        throw failure(errno, path: path, "cannot replace \(what)")
      }
    } catch {
      unlink(temp)
      throw error
    }
  }
}

extension FileDescriptor {
  /// `fsync(2)`, retried on EINTR.
  func sync(path: String, _ what: String) throws {
    while fsync(rawValue) != 0 {
      let code = errno
      if code == EINTR { continue }
      throw DaemonFile.failure(code, path: path, what)
    }
  }
}
