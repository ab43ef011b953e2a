/// Little-endian field access into a small header buffer; reads past the end return nil.
struct ZipFields {
  let bytes: [UInt8]
  let base: Int

  init(_ bytes: [UInt8], base: Int = 0) {
    self.bytes = bytes
    self.base = base
  }

  func u16(_ at: Int) -> UInt16? {
    let i = base + at
    guard i >= 0, i + 2 <= bytes.count else { return nil }
    return UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8
  }

  func u32(_ at: Int) -> UInt32? {
    guard let lo = u16(at), let hi = u16(at + 2) else { return nil }
    return UInt32(lo) | UInt32(hi) << 16
  }

  func u64(_ at: Int) -> UInt64? {
    guard let lo = u32(at), let hi = u32(at + 4) else { return nil }
    return UInt64(lo) | UInt64(hi) << 32
  }
}

extension ZipReader {
  static let endSignature: UInt32 = 0x0605_4B50
  static let zip64LocatorSignature: UInt32 = 0x0706_4B50
  static let zip64EndSignature: UInt32 = 0x0606_4B50
  static let centralSignature: UInt32 = 0x0201_4B50
  static let localSignature: UInt32 = 0x0403_4B50

  /// Where the central directory is, from the end records.
  struct End {
    var entryCount: Int64
    var centralDirectoryOffset: Int64
    var centralDirectorySize: Int64
  }

  /// A central directory entry before its local header is read.
  struct CentralEntry {
    var name: String
    var flags: UInt16
    var method: UInt16
    var crc32: UInt32
    var compressedSize: Int64
    var size: Int64
    var localHeaderOffset: Int64
  }

  static func invalid(_ file: ReadableFile, _ message: String) -> CheckpointError {
    CheckpointError(.invalidFormat, path: file.path, message)
  }

  /// Converts an unsigned field to `Int64`, refusing values that do not fit.
  static func int64(_ value: UInt64, _ what: String, _ file: ReadableFile) throws -> Int64 {
    guard value <= UInt64(Int64.max) else { throw invalid(file, "zip \(what) \(value) is out of range") }
    return Int64(value)
  }

  /// Finds the end of central directory record in the last 64 KiB + 22 bytes, then the zip64 records.
  static func findEnd(file: ReadableFile, limits: Limits) throws -> End {
    guard file.size >= 22 else {
      throw CheckpointError(.truncated, path: file.path, "too short for a zip archive (\(file.size) bytes)")
    }
    let tailLength = Swift.min(file.size, 65_535 + 22)
    let tailStart = file.size - tailLength
    let tail = try file.readBytes(at: tailStart, count: Int(tailLength))
    let fields = ZipFields(tail)
    var found: Int?
    var position = tail.count - 22
    while position >= 0 {
      if fields.u32(position) == endSignature, let commentLength = fields.u16(position + 20),
        position + 22 + Int(commentLength) <= tail.count
      {
        found = position
        break
      }
      position -= 1
    }
    guard let eocd = found else {
      throw CheckpointError(
        .truncated, path: file.path, "failed finding central directory (no end record): file cut short or not a zip")
    }
    let record = ZipFields(tail, base: eocd)
    let eocdOffset = tailStart + Int64(eocd)
    guard let disk = record.u16(4), let cdDisk = record.u16(6), let onDisk = record.u16(8),
      let total = record.u16(10), let cdSize = record.u32(12), let cdOffset = record.u32(16)
    else { throw invalid(file, "zip end record is cut short") }
    guard (disk == 0 || disk == 0xFFFF) && (cdDisk == 0 || cdDisk == 0xFFFF) && onDisk == total else {
      throw CheckpointError(.unsupported, path: file.path, "multi-disk zip archives are not supported")
    }
    var end = End(
      entryCount: Int64(total), centralDirectoryOffset: Int64(cdOffset), centralDirectorySize: Int64(cdSize))
    var limitOffset = eocdOffset
    if eocdOffset >= 20 {
      let locator = ZipFields(try file.readBytes(at: eocdOffset - 20, count: 20))
      if locator.u32(0) == zip64LocatorSignature {
        limitOffset = eocdOffset - 20
        end = try readZip64End(
          file: file, locator: locator, locatorOffset: eocdOffset - 20, classic: end,
          classicRaw: (UInt64(total), UInt64(cdSize), UInt64(cdOffset)))
        if let zip64Offset = locator.u64(8) { limitOffset = try int64(zip64Offset, "zip64 end offset", file) }
      }
    }
    let (cdEnd, overflow) = end.centralDirectoryOffset.addingReportingOverflow(end.centralDirectorySize)
    guard !overflow, cdEnd <= limitOffset else {
      throw CheckpointError(
        .truncated, path: file.path,
        "central directory (\(end.centralDirectoryOffset)+\(end.centralDirectorySize)) lies past its end records")
    }
    guard end.centralDirectorySize <= limits.maxCentralDirectoryBytes else {
      throw CheckpointError(
        .limitExceeded, path: file.path, "central directory of \(end.centralDirectorySize) bytes is too large")
    }
    guard end.entryCount <= limits.maxEntries, end.entryCount <= end.centralDirectorySize / 46 else {
      throw CheckpointError(
        .limitExceeded, path: file.path,
        "absurd zip entry count \(end.entryCount) for a \(end.centralDirectorySize)-byte directory")
    }
    return end
  }

  /// Reads the zip64 end record the locator points at; its values must agree with the classic ones
  /// that are not saturated.
  static func readZip64End(
    file: ReadableFile, locator: ZipFields, locatorOffset: Int64, classic: End,
    classicRaw: (count: UInt64, size: UInt64, offset: UInt64)
  ) throws -> End {
    guard let disk = locator.u32(4), let rawOffset = locator.u64(8), let disks = locator.u32(16),
      disk == 0, disks <= 1
    else { throw CheckpointError(.unsupported, path: file.path, "multi-disk zip64 archives are not supported") }
    let offset = try int64(rawOffset, "zip64 end offset", file)
    guard offset <= locatorOffset - 56 else {
      throw invalid(file, "zip64 locator points at \(offset), past its own position \(locatorOffset)")
    }
    let record = ZipFields(try file.readBytes(at: offset, count: 56))
    guard record.u32(0) == zip64EndSignature, let recordSize = record.u64(4), recordSize >= 44,
      let count = record.u64(24), let onDisk = record.u64(32), let size = record.u64(40),
      let cdOffset = record.u64(48)
    else { throw invalid(file, "zip64 end record at \(offset) is missing or malformed") }
    let (recordEnd, o1) = offset.addingReportingOverflow(12)
    let (recordEnd2, o2) = recordEnd.addingReportingOverflow(try int64(recordSize, "zip64 record size", file))
    guard !o1, !o2, recordEnd2 <= locatorOffset, onDisk == count else {
      throw invalid(file, "zip64 end record at \(offset) has an inconsistent size or entry count")
    }
    func agree(_ classicValue: UInt64, _ sentinel: UInt64, _ value: UInt64, _ what: String) throws {
      guard classicValue == sentinel || classicValue == value else {
        throw invalid(file, "zip64 \(what) \(value) disagrees with the end record's \(classicValue)")
      }
    }
    try agree(classicRaw.count, 0xFFFF, count, "entry count")
    try agree(classicRaw.size, 0xFFFF_FFFF, size, "directory size")
    try agree(classicRaw.offset, 0xFFFF_FFFF, cdOffset, "directory offset")
    return End(
      entryCount: try int64(count, "entry count", file),
      centralDirectoryOffset: try int64(cdOffset, "directory offset", file),
      centralDirectorySize: try int64(size, "directory size", file))
  }
}
