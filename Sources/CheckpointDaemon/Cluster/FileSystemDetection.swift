import CLinux
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The drop-in key `watch`: how a directory's changes are noticed.
public enum WatchSetting: String, Sendable, Equatable, Codable, CaseIterable {
  /// inotify alone on local file systems, inotify plus polling elsewhere (DESIGN.md).
  case auto
  /// inotify alone, whatever the file system (a FUSE mount known to be written only through this node).
  case inotify
  /// inotify plus polling every `poll_seconds`, whatever the file system.
  case poll
}

/// How a directory is watched once `auto` is decided.
public enum WatchMode: String, Sendable, Equatable, Codable {
  /// inotify alone.
  case inotify
  /// inotify plus a poll of the directory every `poll_seconds` (writes from other machines raise no event).
  case poll
}

/// What was found out about one watched directory's file system, and the watch mode chosen for it.
public struct FileSystemReport: Sendable, Equatable, Codable {
  /// The type: the mountinfo fstype (`nfs4`, `lustre`, `fuse.sshfs`) or the name of the statfs magic.
  public var type: String
  /// statfs `f_type`, when statfs worked.
  public var magic: UInt64?
  /// The mount point holding the directory, when mountinfo named one.
  public var mountPoint: String?
  /// The class the type falls in.
  public var fsClass: FileSystemClass
  /// The mode in effect.
  public var mode: WatchMode
  /// Why, in words for `ckptd config check` and the status file.
  public var reason: String

  /// Whether inotify alone sees every write on this file system.
  public var isLocal: Bool { fsClass.isLocal }

  /// `0x65735546`, or `?` without statfs.
  public var magicHex: String { magic.map { "0x" + String($0, radix: 16) } ?? "?" }
}

/// Identifies the file system of a watched directory (DESIGN.md "Shared file systems and several nodes").
///
/// statfs `f_type` decides the class (a mount table cannot fake it); `/proc/self/mountinfo` names the type
/// precisely (nfs vs nfs4, the FUSE subtype such as `fuse.juicefs`, or a bare `fuse` mount's source).
public enum FileSystemDetection {
  /// The pure decision: `fType` from statfs (nil when it failed), the text of /proc/self/mountinfo, the
  /// directory's canonical absolute path, and the `watch` setting.
  public static func classify(
    fType: UInt64?, mountinfo: String, path: String, setting: WatchSetting = .auto
  ) -> FileSystemReport {
    let mount = MountInfoEntry.containing(path, in: MountInfoEntry.parse(mountinfo))
    var type = mount.map(typeName) ?? "unknown"
    var fsClass = FileSystemClass.unknown
    if let fType, let kind = FileSystemKind.byMagic(fType) {
      fsClass = kind.fsClass
      if kind.fsClass == .fuse {
        // virtiofs carries the FUSE magic; mountinfo tells it apart.
        if let mount, mount.fsType == "virtiofs" {
          fsClass = .hostShared
        } else if let mount, FileSystemKind.classOf(fsType: mount.fsType) == .fuse {
          type = typeName(mount)
        } else {
          type = "fuse"
        }
      } else if mount.map({ kind.names.contains($0.fsType) }) != true {
        // The mount table disagrees with (or lacks) the magic: the magic wins.
        type = kind.names[0]
      }
    } else if let mount, let known = FileSystemKind.classOf(fsType: mount.fsType) {
      fsClass = known
    }
    let magicText = fType.map { " (f_type 0x" + String($0, radix: 16) + ")" } ?? ""
    var reason: String
    if fsClass == .unknown {
      reason = "\(type)\(magicText) is \(fsClass.phrase)"
    } else {
      reason = "\(type) is \(fsClass.phrase)"
    }
    let mode: WatchMode
    switch setting {
    case .auto:
      mode = fsClass.isLocal ? .inotify : .poll
    case .inotify:
      mode = .inotify
      reason = "watch = \"inotify\" (\(type) is \(fsClass.isLocal ? "local" : "not local"))"
    case .poll:
      mode = .poll
      reason = "watch = \"poll\" (\(type) is \(fsClass.isLocal ? "local" : "not local"))"
    }
    return FileSystemReport(
      type: type, magic: fType, mountPoint: mount?.mountPoint, fsClass: fsClass, mode: mode, reason: reason)
  }

  /// The reported name of a mount: its fstype; for a bare `fuse`/`fuseblk` mount, `fuse.<source>` when the
  /// source is a plain word (such mounts put the program's name there).
  static func typeName(_ mount: MountInfoEntry) -> String {
    guard mount.fsType == "fuse" || mount.fsType == "fuseblk" else { return mount.fsType }
    let plain =
      !mount.source.isEmpty
      && mount.source.utf8.allSatisfy { byte in
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
          || byte == 0x2D || byte == 0x5F || byte == 0x2E
      }
    return plain ? "fuse." + mount.source : mount.fsType
  }

  /// The impure wrapper: statfs and /proc/self/mountinfo for `path`. A directory that does not exist yet is
  /// judged by its nearest existing parent (where it will be created).
  public static func detect(path: String, setting: WatchSetting = .auto) -> FileSystemReport {
    let existing = nearestExisting(path)
    let canonical = existing.withCString { pointer -> String in
      guard let resolved = realpath(pointer, nil) else { return existing }
      defer { free(resolved) }
      return String(cString: resolved)
    }
    let raw = ckptd_statfs_type(canonical)
    let fType: UInt64? = raw < 0 ? nil : UInt64(raw)
    let mountinfo = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
    return classify(fType: fType, mountinfo: mountinfo, path: canonical, setting: setting)
  }

  static func nearestExisting(_ path: String) -> String {
    var current = path.isEmpty ? "/" : path
    while current != "/" && access(current, F_OK) != 0 {
      current = (current as NSString).deletingLastPathComponent
      if current.isEmpty { return "/" }
    }
    return current
  }
}
