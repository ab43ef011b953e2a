import CheckpointFormats
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// Replaces a small file atomically: a temporary in the same folder, written, fsynced, mode 0644, renamed.
///
/// A reader (node_exporter's textfile collector, `ckptd status`) sees the old text or the new, never a part.
enum AtomicTextFile {
  static func replace(_ path: String, with text: String) throws {
    let file = FilePath(path)
    let folder = file.removingLastComponent()
    let name = file.lastComponent?.string ?? "file"
    let temp = folder.appending(".\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    let fd: FileDescriptor
    do {
      fd = try FileDescriptor.open(
        temp, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec, .noFollow],
        permissions: [.ownerReadWrite, .groupRead, .otherRead])
    } catch let errno as Errno {
      throw CheckpointError(.io, path: temp.string, "cannot create: \(errno.description)", errno: errno.rawValue)
    }
    do {
      try fd.closeAfter {
        _ = try fd.writeAll(Array(text.utf8))
        // umask may have narrowed the mode: the collector runs as another user.
        _ = fchmod(fd.rawValue, 0o644)
        guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
      }
      guard rename(temp.string, path) == 0 else { throw Errno(rawValue: errno) }
    } catch let error as Errno {
      unlink(temp.string)
      throw CheckpointError(.io, path: path, "cannot replace: \(error.description)", errno: error.rawValue)
    }
  }
}
