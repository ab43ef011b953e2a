/// One line of `/proc/self/mountinfo` (proc(5)): where a file system is mounted, its type and its source.
public struct MountInfoEntry: Sendable, Equatable {
  /// The mount point, with the kernel's octal escapes (`\040` for a space) undone.
  public var mountPoint: String
  /// The fstype column: `ext4`, `nfs4`, `fuse.sshfs`, `fuse` (a FUSE mount without subtype), `virtiofs`.
  public var fsType: String
  /// The mount source column (`server:/export`, `/dev/sda1`, `bindfs`, `pypassthrough`).
  public var source: String

  public init(mountPoint: String, fsType: String, source: String) {
    self.mountPoint = mountPoint
    self.fsType = fsType
    self.source = source
  }

  /// Every well-formed line of a mountinfo text, in file order (later lines are mounted on top of earlier ones).
  public static func parse(_ text: String) -> [MountInfoEntry] {
    var entries: [MountInfoEntry] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
      let fields = line.split(separator: " ", omittingEmptySubsequences: true)
      // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
      guard fields.count >= 7, let dash = fields[6...].firstIndex(of: "-"), dash + 1 < fields.count else { continue }
      let source = dash + 2 < fields.count ? unescape(fields[dash + 2]) : ""
      entries.append(
        MountInfoEntry(mountPoint: unescape(fields[4]), fsType: unescape(fields[dash + 1]), source: source))
    }
    return entries
  }

  /// The entry whose mount point is the longest prefix of `path` (an absolute, canonical path); the last such
  /// line when several mounts share the point (the one on top).
  public static func containing(_ path: String, in entries: [MountInfoEntry]) -> MountInfoEntry? {
    var best: MountInfoEntry?
    for entry in entries where covers(entry.mountPoint, path) {
      if let current = best, current.mountPoint.count > entry.mountPoint.count { continue }
      best = entry
    }
    return best
  }

  static func covers(_ mountPoint: String, _ path: String) -> Bool {
    if mountPoint == "/" { return path.hasPrefix("/") }
    return path == mountPoint || path.hasPrefix(mountPoint + "/")
  }

  /// Undoes the `\ooo` octal escapes the kernel writes for space, tab, newline and backslash.
  static func unescape(_ field: Substring) -> String {
    guard field.contains("\\") else { return String(field) }
    var bytes: [UInt8] = []
    let raw = Array(field.utf8)
    var index = 0
    while index < raw.count {
      if raw[index] == 0x5C, let value = octal(raw, index + 1) {
        bytes.append(value)
        index += 4
      } else {
        bytes.append(raw[index])
        index += 1
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  private static func octal(_ raw: [UInt8], _ start: Int) -> UInt8? {
    guard start + 3 <= raw.count else { return nil }
    var value = 0
    for byte in raw[start..<start + 3] {
      guard byte >= 0x30, byte <= 0x37 else { return nil }
      value = value * 8 + Int(byte - 0x30)
    }
    return value <= 255 ? UInt8(value) : nil
  }
}
