/// One stored record of a zip archive, located through its local header.
public struct ZipEntry: Sendable, Hashable {
  /// The full name in the archive, e.g. `pytorch_model/data/0`.
  public var name: String
  /// Absolute offset of the first data byte (after the local header, name and extra fields).
  public var dataOffset: Int64
  /// Size in bytes (stored, so compressed and uncompressed sizes are equal).
  public var size: Int64
  /// The CRC-32 the central directory records.
  public var crc32: UInt32
  /// Absolute offset of the local file header.
  public var localHeaderOffset: Int64
}

/// Reads the central directory of a `torch.save` zip archive (zip64 included) with `pread`, never
/// loading data.
///
/// Only what torch writes is accepted: stored (uncompressed), unencrypted entries, unique names, all
/// inside one top folder. Every offset and size is overflow-checked against the file; zip64 records must
/// agree with the classic ones they replace.
public struct ZipReader: Sendable {
  /// Bounds applied while reading the directory.
  public struct Limits: Sendable {
    /// Largest central directory read into memory.
    public var maxCentralDirectoryBytes: Int64 = 64 << 20
    /// Largest number of entries.
    public var maxEntries: Int64 = 10_000_100
    public init() {}
  }

  /// The archive file.
  public let file: ReadableFile
  /// Entries in central directory order.
  public let entries: [ZipEntry]
  /// The single top folder every entry lives in (`pytorch_model`), without the slash.
  public let prefix: String
  /// Offset of the central directory: no record's data may reach into it.
  public let centralDirectoryOffset: Int64
  private let index: [String: Int]

  /// Reads and validates the directory of `file`.
  public init(file: ReadableFile, limits: Limits = Limits()) throws {
    self.file = file
    let end = try ZipReader.findEnd(file: file, limits: limits)
    let parsed = try ZipReader.readCentralDirectory(file: file, end: end, limits: limits)
    guard let first = parsed.first else {
      throw CheckpointError(.invalidFormat, path: file.path, "zip archive has no entries")
    }
    guard let slash = first.name.firstIndex(of: "/") else {
      throw CheckpointError(
        .invalidFormat, path: file.path, "file in archive is not in a subdirectory: '\(first.name)'")
    }
    let prefix = String(first.name[..<slash])
    var index: [String: Int] = [:]
    index.reserveCapacity(parsed.count)
    for (position, entry) in parsed.enumerated() {
      guard entry.name.hasPrefix(prefix + "/") else {
        throw CheckpointError(
          .invalidFormat, path: file.path, "zip entry '\(entry.name)' lies outside the top folder '\(prefix)/'")
      }
      let record = String(entry.name.dropFirst(prefix.count + 1))
      guard index.updateValue(position, forKey: record) == nil else {
        throw CheckpointError(.invalidFormat, path: file.path, "duplicate zip entry '\(entry.name)'")
      }
    }
    self.prefix = prefix
    self.index = index
    self.centralDirectoryOffset = end.centralDirectoryOffset
    var located: [ZipEntry] = []
    located.reserveCapacity(parsed.count)
    for entry in parsed {
      located.append(try ZipReader.locate(entry, file: file, dataLimit: end.centralDirectoryOffset))
    }
    self.entries = located
  }

  /// The entry for a record name relative to the top folder (`data.pkl`, `data/0`), if present.
  public func entry(_ record: String) -> ZipEntry? {
    index[record].map { entries[$0] }
  }

  /// Record names relative to the top folder, in directory order.
  public var recordNames: [String] {
    entries.map { String($0.name.dropFirst(prefix.count + 1)) }
  }
}
