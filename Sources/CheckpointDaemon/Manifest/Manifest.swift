import CheckpointFormats
import Foundation
import SystemPackage

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
    let json = try Self.encodeLine(record, path: path)
    let existed = access(path, F_OK) == 0
    let fd = try DaemonFile.open(
      path, .readWrite, options: [.append, .create, .noFollow], permissions: [.ownerReadWrite, .groupRead, .otherRead],
      what: "cannot open manifest for appending")
    try DaemonFile.attempt(path, "cannot append to manifest") {
      try fd.closeAfter {
        var line = [UInt8]()
        if try Self.endsWithoutNewline(fd: fd, path: path) { line.append(0x0A) }
        line.append(contentsOf: json)
        _ = try fd.writeAll(line)
        try fd.sync(path: path, "cannot fsync manifest")
      }
    }
    if !existed { Self.fsyncFolder(of: path) }
  }

  /// `record` as one line of JSON (sorted keys) with its newline.
  public static func encodeLine(_ record: ManifestRecord, path: String) throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    do {
      var line = [UInt8](try encoder.encode(record))
      line.append(0x0A)
      return line
    } catch {
      throw CheckpointError(.invalidFormat, path: path, "cannot encode manifest record: \(error)")
    }
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

  private static func endsWithoutNewline(fd: FileDescriptor, path: String) throws -> Bool {
    var info = stat()
    guard fstat(fd.rawValue, &info) == 0 else { throw ioError(path, "cannot stat manifest") }
    guard info.st_size > 0 else { return false }
    var last: UInt8 = 0
    let got = try withUnsafeMutableBytes(of: &last) {
      try fd.read(fromAbsoluteOffset: Int64(info.st_size - 1), into: $0, retryOnInterrupt: true)
    }
    guard got == 1 else { throw CheckpointError(.io, path: path, "cannot read manifest: short read") }
    return last != 0x0A
  }

  static func readWhole(path: String) throws -> [UInt8]? {
    try DaemonFile.readWhole(path, what: "manifest")
  }

  static func fsyncFolder(of path: String) {
    let folder = (path as NSString).deletingLastPathComponent
    guard
      let fd = try? DaemonFile.open(
        folder.isEmpty ? "." : folder, .readOnly, options: .directory, what: "cannot open the manifest's folder")
    else { return }
    _ = try? fd.closeAfter { try fd.sync(path: folder, "cannot fsync the manifest's folder") }
  }

  static func ioError(_ path: String, _ what: String) -> CheckpointError {
    let code = errno
    return CheckpointError(.io, path: path, "\(what): \(String(cString: strerror(code)))", errno: code)
  }
}
