/// Streams a stored (uncompressed) zip archive into an `OutputFile` with the byte layout `torch.save`
/// produces through miniz: every entry named `<archive>/<record>`, data aligned to 64 bytes through an
/// `FB` padding extra field, zeros for CRC and sizes in the local header, a data descriptor after the
/// data, the real CRC-32 and sizes in the central directory, and zip64 end records always.
///
/// Records are written one after the other in the order they are added; `finish()` writes the central
/// directory. The writer never commits the output file: the caller does.
public final class ZipWriter {
  /// One record as the central directory lists it.
  public struct Entry: Sendable, Hashable {
    /// The full entry name, `<archive>/<record>`.
    public var name: String
    public var layout: ZipLayout.Record
    public var crc32: UInt32
  }

  /// The file the archive goes into.
  public let output: OutputFile
  /// The top folder every entry lives in.
  public let archiveName: String
  /// Records written so far, in order.
  public private(set) var entries: [Entry] = []
  private var finished = false

  /// General purpose flag: sizes and CRC follow in a data descriptor.
  static let flagDataDescriptor: UInt16 = 0x0008
  /// General purpose flag: the name is UTF-8.
  static let flagUTF8: UInt16 = 0x0800

  /// Starts an archive at the output's current position; `archiveName` must be a single path component.
  public init(output: OutputFile, archiveName: String) throws {
    guard !archiveName.isEmpty, !archiveName.contains("/") else {
      throw CheckpointError(
        .invalidFormat, path: output.path, "archive name '\(archiveName)' must be one non-empty path component")
    }
    self.output = output
    self.archiveName = archiveName
  }

  /// Adds a record whose data is a small byte array (pickle, version strings).
  public func addRecord(_ name: String, bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { (raw) in
      try addRecord(name, size: Int64(raw.count)) { (body) in try body(raw) }
    }
  }

  /// Adds a record streamed from `source` through `scratch`; the source must produce exactly
  /// `source.byteCount` bytes.
  public func addRecord(_ name: String, source: any TensorSource, scratch: UnsafeMutableRawBufferPointer) throws {
    try addRecord(name, size: source.byteCount) { (body) in try source.stream(scratch: scratch, body) }
  }

  private func addRecord(
    _ name: String, size: Int64,
    produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
  ) throws {
    guard !finished else {
      throw CheckpointError(.invalidFormat, path: output.path, "zip archive already finished")
    }
    let fullName = archiveName + "/" + name
    let nameBytes = Array(fullName.utf8)
    guard nameBytes.count <= 0xFFFF else {
      throw CheckpointError(.limitExceeded, path: output.path, "zip entry name longer than 65535 bytes")
    }
    guard size >= 0 else {
      throw CheckpointError(.invalidFormat, path: output.path, "record '\(name)' has a negative size")
    }
    let layout = ZipLayout.record(at: output.position, nameLength: nameBytes.count, size: size)
    try output.write(localHeader(layout: layout, name: nameBytes))
    var crc = CRC32()
    var written: Int64 = 0
    try produce { (chunk) in
      guard written + Int64(chunk.count) <= size else {
        throw CheckpointError(.mismatch, path: output.path, "record '\(name)' produced more than \(size) bytes")
      }
      crc.update(chunk)
      try output.write(chunk)
      written += Int64(chunk.count)
    }
    guard written == size else {
      throw CheckpointError(
        .mismatch, path: output.path, "record '\(name)' produced \(written) bytes, expected \(size)")
    }
    if layout.descriptorLength > 0 {
      var descriptor: [UInt8] = []
      descriptor.appendLE32(0x0807_4B50)
      descriptor.appendLE32(crc.value)
      if layout.descriptorLength == 24 {
        descriptor.appendLE64(UInt64(size))
        descriptor.appendLE64(UInt64(size))
      } else {
        descriptor.appendLE32(UInt32(size))
        descriptor.appendLE32(UInt32(size))
      }
      try output.write(descriptor)
    }
    entries.append(Entry(name: fullName, layout: layout, crc32: crc.value))
  }

  /// Writes the central directory, the zip64 end record and locator, and the classic end record.
  public func finish() throws {
    guard !finished else { return }
    finished = true
    let directoryOffset = output.position
    var buffer: [UInt8] = []
    buffer.reserveCapacity(1 << 16)
    for entry in entries {
      buffer.append(contentsOf: ZipWriter.centralHeader(entry))
      if buffer.count >= 1 << 20 {
        try output.write(buffer)
        buffer.removeAll(keepingCapacity: true)
      }
    }
    try output.write(buffer)
    let directorySize = output.position - directoryOffset
    try output.write(
      ZipWriter.endRecords(
        count: entries.count, directoryOffset: directoryOffset, directorySize: directorySize,
        zip64EndOffset: output.position))
  }

  /// Local header, name, optional zip64 extra and the FB padding extra (section 1.2 of the reference).
  func localHeader(layout: ZipLayout.Record, name: [UInt8]) -> [UInt8] {
    var header: [UInt8] = []
    header.reserveCapacity(Int(ZipLayout.localHeaderSize) + name.count + layout.localExtraLength)
    header.appendLE32(0x0403_4B50)
    header.appendLE16(0)  // version needed: 0 for stored entries
    header.appendLE16(ZipWriter.flags(size: layout.size))
    header.appendLE16(0)  // method: stored
    header.appendLE16(0)  // DOS time (torch's miniz build writes zero)
    header.appendLE16(0)  // DOS date
    header.appendLE32(0)  // crc32: in the data descriptor
    header.appendLE32(0)  // compressed size
    header.appendLE32(0)  // uncompressed size
    header.appendLE16(UInt16(name.count))
    header.appendLE16(UInt16(layout.localExtraLength))
    header.append(contentsOf: name)
    if layout.localZip64ExtraLength > 0 {
      header.appendLE16(0x0001)
      header.appendLE16(UInt16(layout.localZip64ExtraLength - 4))
      if layout.sizeNeedsZip64 {
        header.appendLE64(UInt64(layout.size))
        header.appendLE64(0)  // miniz writes the compressed size before it is known
      }
      if layout.offsetNeedsZip64 { header.appendLE64(UInt64(layout.headerOffset)) }
    }
    header.append(contentsOf: [0x46, 0x42])  // "FB"
    header.appendLE16(UInt16(layout.paddingLength))
    header.append(contentsOf: [UInt8](repeating: 0x5A, count: layout.paddingLength))
    return header
  }

  static func flags(size: Int64) -> UInt16 {
    size > 0 ? flagUTF8 | flagDataDescriptor : flagUTF8
  }

  /// One central directory header with its zip64 extra when a size or the offset needs 64 bits.
  static func centralHeader(_ entry: Entry) -> [UInt8] {
    let layout = entry.layout
    var extra: [UInt8] = []
    if layout.sizeNeedsZip64 || layout.offsetNeedsZip64 {
      var fields: [UInt8] = []
      if layout.sizeNeedsZip64 {
        fields.appendLE64(UInt64(layout.size))
        fields.appendLE64(UInt64(layout.size))
      }
      if layout.offsetNeedsZip64 { fields.appendLE64(UInt64(layout.headerOffset)) }
      extra.appendLE16(0x0001)
      extra.appendLE16(UInt16(fields.count))
      extra.append(contentsOf: fields)
    }
    let name = Array(entry.name.utf8)
    var header: [UInt8] = []
    header.reserveCapacity(Int(ZipLayout.centralHeaderSize) + name.count + extra.count)
    header.appendLE32(0x0201_4B50)
    header.appendLE16(0)  // version made by
    header.appendLE16(0)  // version needed
    header.appendLE16(flags(size: layout.size))
    header.appendLE16(0)  // method
    header.appendLE16(0)  // time
    header.appendLE16(0)  // date
    header.appendLE32(entry.crc32)
    header.appendClamped32(layout.size)
    header.appendClamped32(layout.size)
    header.appendLE16(UInt16(name.count))
    header.appendLE16(UInt16(extra.count))
    header.appendLE16(0)  // comment length
    header.appendLE16(0)  // disk number
    header.appendLE16(0)  // internal attributes
    header.appendLE32(0)  // external attributes
    header.appendClamped32(layout.headerOffset)
    header.append(contentsOf: name)
    header.append(contentsOf: extra)
    return header
  }

  /// Zip64 end of central directory (56 bytes), its locator (20) and the classic end record (22).
  static func endRecords(count: Int, directoryOffset: Int64, directorySize: Int64, zip64EndOffset: Int64)
    -> [UInt8]
  {
    var bytes: [UInt8] = []
    bytes.appendLE32(0x0606_4B50)
    bytes.appendLE64(44)  // size of the rest of this record
    bytes.appendLE16(0x031E)  // version made by
    bytes.appendLE16(0x002D)  // version needed
    bytes.appendLE32(0)  // this disk
    bytes.appendLE32(0)  // disk with the central directory
    bytes.appendLE64(UInt64(count))
    bytes.appendLE64(UInt64(count))
    bytes.appendLE64(UInt64(directorySize))
    bytes.appendLE64(UInt64(directoryOffset))
    bytes.appendLE32(0x0706_4B50)
    bytes.appendLE32(0)
    bytes.appendLE64(UInt64(zip64EndOffset))
    bytes.appendLE32(1)  // total disks
    bytes.appendLE32(0x0605_4B50)
    bytes.appendLE16(0)
    bytes.appendLE16(0)
    bytes.appendLE16(UInt16(Swift.min(count, 0xFFFF)))
    bytes.appendLE16(UInt16(Swift.min(count, 0xFFFF)))
    bytes.appendClamped32(directorySize)
    bytes.appendClamped32(directoryOffset)
    bytes.appendLE16(0)  // comment length
    return bytes
  }
}
