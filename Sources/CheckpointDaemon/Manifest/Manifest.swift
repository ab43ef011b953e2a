import CheckpointFormats
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What `Manifest.readAll()` found: the records, and the lines it had to skip.
public struct ManifestContents: Sendable, Equatable {
  /// Every readable record, in file order.
  public var records: [ManifestRecord]
  /// 1-based numbers of damaged lines in the middle of the file (skipped).
  public var damagedLines: [Int]
  /// The last line was cut short (a crash while appending); it was ignored.
  public var tornTail: Bool

  public init(records: [ManifestRecord] = [], damagedLines: [Int] = [], tornTail: Bool = false) {
    self.records = records
    self.damagedLines = damagedLines
    self.tornTail = tornTail
  }
}

/// The per-directory manifest: JSON Lines, one `ManifestRecord` per event, appended with O_APPEND and fsynced.
///
/// A manifest is small (one line per checkpoint event), so it is read whole.
public final class Manifest: Sendable {
  /// The manifest file.
  public let path: String

  public init(path: String) {
    self.path = path
  }

  /// Appends `record` as one line and fsyncs it (and, when the file is new, its folder).
  ///
  /// If the file ends in a torn line (a crash mid-append), a newline is written first so the new record stays whole.
  public func append(_ record: ManifestRecord) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let json: Data
    do {
      json = try encoder.encode(record)
    } catch {
      throw CheckpointError(.invalidFormat, path: path, "cannot encode manifest record: \(error)")
    }
    let existed = access(path, F_OK) == 0
    let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
    guard fd >= 0 else { throw Self.ioError(path, "cannot open manifest for appending") }
    defer { close(fd) }
    var line = [UInt8]()
    if try Self.endsWithoutNewline(fd: fd, path: path) { line.append(0x0A) }
    line.append(contentsOf: json)
    line.append(0x0A)
    try Self.writeAll(fd: fd, bytes: line, path: path)
    guard fsync(fd) == 0 else { throw Self.ioError(path, "cannot fsync manifest") }
    if !existed { Self.fsyncFolder(of: path) }
  }

  /// Every record in file order; a missing file is an empty manifest. Damaged lines are skipped.
  public func read() throws -> [ManifestRecord] {
    try readAll().records
  }

  /// Every record plus what was skipped: a torn last line is tolerated, a damaged line in the middle is skipped
  /// and its number reported.
  public func readAll() throws -> ManifestContents {
    guard let bytes = try Self.readWhole(path: path) else { return ManifestContents() }
    return Self.parse(bytes)
  }

  /// The last record of each checkpoint, by checkpoint name; empty when the manifest is missing or unreadable.
  public func latest() -> [String: ManifestRecord] {
    guard let records = try? read() else { return [:] }
    return Self.latest(of: records)
  }

  /// The last record of each checkpoint in `records` that says where its conversion stands (`exec` records,
  /// written after a conversion, say nothing about it and are passed over).
  public static func latest(of records: [ManifestRecord]) -> [String: ManifestRecord] {
    var result: [String: ManifestRecord] = [:]
    for record in records where record.event != .exec { result[record.checkpoint] = record }
    return result
  }

  /// Splits JSON Lines bytes into records.
  static func parse(_ bytes: [UInt8]) -> ManifestContents {
    var contents = ManifestContents()
    let decoder = JSONDecoder()
    let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
    let endsWithNewline = bytes.last == 0x0A
    for (index, line) in lines.enumerated() {
      let isLast = index == lines.count - 1
      if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
      if let record = try? decoder.decode(ManifestRecord.self, from: Data(line)) {
        contents.records.append(record)
      } else if isLast && !endsWithNewline {
        contents.tornTail = true
      } else {
        contents.damagedLines.append(index + 1)
      }
    }
    return contents
  }

  private static func endsWithoutNewline(fd: Int32, path: String) throws -> Bool {
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw ioError(path, "cannot stat manifest") }
    guard info.st_size > 0 else { return false }
    var last: UInt8 = 0
    let got = pread(fd, &last, 1, off_t(info.st_size - 1))
    guard got == 1 else { throw ioError(path, "cannot read manifest") }
    return last != 0x0A
  }

  static func readWhole(path: String) throws -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
      if errno == ENOENT { return nil }
      throw ioError(path, "cannot open manifest")
    }
    defer { close(fd) }
    var result = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
      let got = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if got < 0 {
        if errno == EINTR { continue }
        throw ioError(path, "cannot read manifest")
      }
      if got == 0 { break }
      result.append(contentsOf: chunk[0..<got])
    }
    return result
  }

  static func writeAll(fd: Int32, bytes: [UInt8], path: String) throws {
    var offset = 0
    while offset < bytes.count {
      let wrote = bytes.withUnsafeBytes { write(fd, $0.baseAddress.map { $0 + offset }, bytes.count - offset) }
      if wrote < 0 {
        if errno == EINTR { continue }
        throw ioError(path, "cannot write")
      }
      offset += wrote
    }
  }

  static func fsyncFolder(of path: String) {
    let folder = (path as NSString).deletingLastPathComponent
    let fd = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    close(fd)
  }

  static func ioError(_ path: String, _ what: String) -> CheckpointError {
    let code = errno
    return CheckpointError(.io, path: path, "\(what): \(String(cString: strerror(code)))", errno: code)
  }
}
