import CheckpointFormats
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Reads and atomically replaces the status document.
public enum StatusFile {
  /// Reads and decodes the status document at `path`.
  ///
  /// Throws `CheckpointError` `.io` (errno ENOENT when there is no file) or `.invalidFormat`.
  public static func read(path: String) throws -> StatusSnapshot {
    guard let bytes = try Manifest.readWhole(path: path) else {
      throw CheckpointError(
        .io, path: path, "no status file (ckptd is not running, or writes elsewhere)", errno: ENOENT)
    }
    do {
      return try JSONDecoder().decode(StatusSnapshot.self, from: Data(bytes))
    } catch {
      throw CheckpointError(.invalidFormat, path: path, "not a ckptd status document: \(error)")
    }
  }

  /// The document's bytes: pretty-printed JSON with sorted keys and a final newline.
  public static func encode(_ snapshot: StatusSnapshot) throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    do {
      var bytes = [UInt8](try encoder.encode(snapshot))
      bytes.append(0x0A)
      return bytes
    } catch {
      throw CheckpointError(.invalidFormat, path: "", "cannot encode the status document: \(error)")
    }
  }

  /// Replaces `path` with `snapshot` atomically: a temporary file in the same folder (created with its parents
  /// when missing), then `rename(2)`, so a reader sees the old document or the new one, never a part.
  public static func write(_ snapshot: StatusSnapshot, to path: String) throws {
    let bytes = try encode(snapshot)
    let folder = (path as NSString).deletingLastPathComponent
    let name = (path as NSString).lastPathComponent
    if !folder.isEmpty {
      do {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
      } catch {
        throw CheckpointError(.io, path: folder, "cannot create the status folder: \(error.localizedDescription)")
      }
    }
    let temp = (folder.isEmpty ? "" : folder + "/") + ".\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
    guard fd >= 0 else { throw Manifest.ioError(temp, "cannot create the status file") }
    do {
      try Manifest.writeAll(fd: fd, bytes: bytes, path: temp)
      // umask may have narrowed the mode; readers (`ckptd status` as any user) need 0644.
      _ = fchmod(fd, 0o644)
      close(fd)
      guard rename(temp, path) == 0 else { throw Manifest.ioError(path, "cannot replace the status file") }
    } catch {
      close(fd)
      unlink(temp)
      throw error
    }
  }
}
