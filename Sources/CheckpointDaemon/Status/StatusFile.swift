import CheckpointFormats
import Foundation
import SystemPackage

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
    try write(snapshot, to: path, rename: { Glibc.rename($0, $1) })
  }

  /// `write(_:to:)` with the last step replaceable (tests make it fail). The temporary's descriptor is closed
  /// exactly once, before the rename, whatever fails.
  static func write(
    _ snapshot: StatusSnapshot, to path: String, rename: (String, String) -> Int32
  ) throws {
    let bytes = try encode(snapshot)
    let folder = (path as NSString).deletingLastPathComponent
    if !folder.isEmpty {
      do {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
      } catch {
        throw CheckpointError(.io, path: folder, "cannot create the status folder: \(error.localizedDescription)")
      }
    }
    try DaemonFile.replace(path, with: bytes, what: "the status file", rename: rename)
  }
}
