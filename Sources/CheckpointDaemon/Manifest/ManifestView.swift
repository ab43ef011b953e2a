import CheckpointFormats
import Foundation
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// The last record of each checkpoint in a manifest, kept up to date by reading only what was appended since the
/// last look. A manifest only grows (every writer appends under the lock), so after the first read each look
/// costs one stat (`latest()`) or one open and stat (`fresh()`) plus the new lines, not the whole file: with a
/// whole read per conversion, 10,000 conversions in one directory made each conversion cost more than the last.
///
/// The file is read again from the start when it is another file (replaced, re-created) or shorter than what was
/// read (truncated by hand).
struct ManifestView {
  let path: String
  /// The last record of each checkpoint, by name (`exec` records are passed over).
  private(set) var latest: [String: ManifestRecord] = [:]
  /// Records read so far by event name (every record, `exec` included): the status file's counts at start-up.
  private(set) var counts: [String: Int] = [:]
  private var device: UInt64?
  private var inode: UInt64 = 0
  /// Bytes read and parsed (up to the end of the last whole line).
  private(set) var offset: Int64 = 0
  /// The last whole line read (at most 4 KiB of it, ending at `offset`): read again with the new bytes, it tells a
  /// file that was rewritten in place (truncated, then grown past `offset`) from one that was appended to. (A
  /// shorter fingerprint is not enough: two records of one run can end in the same 64 bytes.)
  private var tail: [UInt8] = []
  /// The file's size and mtime at the last look (a stat that shows both unchanged needs no read).
  private var seen: (size: Int64, mtime: timespec)?

  init(path: String) {
    self.path = path
  }

  /// The records as of the file's attributes now: nothing is read when its size and mtime are unchanged.
  mutating func refreshed() -> [String: ManifestRecord] {
    var info = stat()
    guard stat(path, &info) == 0 else {
      // No manifest (any more): nothing is known. ESTALE and the like: what was read stands.
      if errno == ENOENT { reset() }
      return latest
    }
    if let seen, device == UInt64(info.st_dev), inode == UInt64(info.st_ino), seen.size == Int64(info.st_size),
      seen.mtime.tv_sec == info.st_mtim.tv_sec, seen.mtime.tv_nsec == info.st_mtim.tv_nsec
    {
      return latest
    }
    read()
    return latest
  }

  /// The records as of now, read through a fresh open (on NFS, opening a file revalidates it against the server:
  /// after taking a claim, what another node appended before releasing it must be seen).
  mutating func fresh() -> [String: ManifestRecord] {
    read()
    return latest
  }

  /// Drops what is known of checkpoints not in `names` (their folders are gone: rotated away). Memory then
  /// follows the checkpoints present, not every one the directory ever had; a record appended later for such a
  /// name is read as usual.
  mutating func keep(only names: Set<String>) {
    latest = latest.filter { names.contains($0.key) }
  }

  /// Drops what is known of one checkpoint (its folder went away).
  mutating func forget(_ name: String) {
    latest[name] = nil
  }

  private mutating func reset() {
    latest = [:]
    counts = [:]
    device = nil
    offset = 0
    tail = []
    seen = nil
  }

  /// Reads what was appended since the last look, or the whole file when it is another file or was rewritten. A
  /// failed open or read (other than ENOENT) changes nothing: what was read stands until the next look reads.
  private mutating func read() {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      if errno == ENOENT { reset() }
      return
    }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { return }
    let size = Int64(info.st_size)
    var appended: ArraySlice<UInt8>?
    if device == UInt64(info.st_dev) && inode == UInt64(info.st_ino) && size >= offset {
      // Even at the same length the last line is compared: the file may have been rewritten to that length.
      guard size > offset || !tail.isEmpty else {
        seen = (size, info.st_mtim)
        return
      }
      let from = offset - Int64(tail.count)
      guard let bytes = Self.read(fd, from: from, count: Int(size - from), path: path) else { return }
      if bytes.starts(with: tail) { appended = bytes.dropFirst(tail.count) }
    }
    if appended == nil {
      // Another file, a shorter one, or one rewritten in place: read from the start.
      guard let whole = Self.read(fd, from: 0, count: Int(size), path: path) else { return }
      reset()
      device = UInt64(info.st_dev)
      inode = UInt64(info.st_ino)
      appended = whole[...]
    }
    seen = (size, info.st_mtim)
    parse(appended ?? [])
  }

  /// Parses the whole lines of `bytes` (which start at `offset`): a record being appended right now, or a torn
  /// last line, is read once it is finished.
  private mutating func parse(_ bytes: ArraySlice<UInt8>) {
    guard let end = bytes.lastIndex(of: 0x0A) else { return }
    let lines = Array(bytes[bytes.startIndex...end])
    let contents = Manifest.parse(lines)
    for record in contents.records {
      counts[record.event.rawValue, default: 0] += 1
      if record.event != .exec { latest[record.checkpoint] = Self.compact(record) }
    }
    offset += Int64(lines.count)
    let lastLine = lines.dropLast().lastIndex(of: 0x0A).map { lines[($0 + 1)...] } ?? lines[...]
    tail = Array(lastLine.suffix(4096))
  }

  /// What the daemon asks of a latest record (event, output names, start, error, retryable), without the source
  /// list, hashes and notes: one entry per checkpoint ever converted in the directory stays in memory.
  static func compact(_ record: ManifestRecord) -> ManifestRecord {
    var kept = record
    kept.sources = []
    kept.outputs = record.outputs.map { ManifestFile(name: $0.name, bytes: $0.bytes) }
    kept.note = nil
    kept.stderrTail = nil
    return kept
  }

  /// `count` bytes at `start` (fewer at the end of the file); nil when the read fails.
  private static func read(_ fd: Int32, from start: Int64, count: Int, path: String) -> [UInt8]? {
    var bytes = [UInt8](repeating: 0, count: count)
    let got = try? bytes.withUnsafeMutableBytes { raw in
      try FileDescriptor(rawValue: fd).readFully(at: start, into: raw, path: path)
    }
    return got.map { Array(bytes[0..<$0]) }
  }
}
