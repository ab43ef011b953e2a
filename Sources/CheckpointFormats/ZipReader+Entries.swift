extension ZipReader {
  /// Parses every central directory header, applying the zip64 extra where fields are saturated.
  static func readCentralDirectory(file: ReadableFile, end: End, limits: Limits) throws -> [CentralEntry] {
    let directory = try file.readBytes(at: end.centralDirectoryOffset, count: Int(end.centralDirectorySize))
    var entries: [CentralEntry] = []
    entries.reserveCapacity(Int(end.entryCount))
    var position = 0
    for number in 0..<end.entryCount {
      let header = ZipFields(directory, base: position)
      guard header.u32(0) == centralSignature, let flags = header.u16(8), let method = header.u16(10),
        let crc = header.u32(16), let compressed32 = header.u32(20), let size32 = header.u32(24),
        let nameLength = header.u16(28), let extraLength = header.u16(30), let commentLength = header.u16(32),
        let disk16 = header.u16(34), let local32 = header.u32(42)
      else {
        throw invalid(file, "central directory entry \(number) at byte \(position) is malformed or cut short")
      }
      let nameStart = position + 46
      let extraStart = nameStart + Int(nameLength)
      let next = extraStart + Int(extraLength) + Int(commentLength)
      guard next <= directory.count else {
        throw invalid(file, "central directory entry \(number) runs past the directory")
      }
      guard let name = String(validating: directory[nameStart..<extraStart], as: UTF8.self) else {
        throw invalid(file, "zip entry \(number) has a name that is not valid UTF-8")
      }
      var compressed = UInt64(compressed32)
      var size = UInt64(size32)
      var local = UInt64(local32)
      if size32 == 0xFFFF_FFFF || compressed32 == 0xFFFF_FFFF || local32 == 0xFFFF_FFFF || disk16 == 0xFFFF {
        let extra = Array(directory[extraStart..<(extraStart + Int(extraLength))])
        guard let zip64 = zip64Extra(extra) else {
          throw invalid(file, "zip entry '\(name)' has saturated sizes but no zip64 extra field")
        }
        var cursor = 0
        func take(_ what: String) throws -> UInt64 {
          guard let value = ZipFields(zip64).u64(cursor) else {
            throw invalid(file, "zip entry '\(name)': zip64 extra field lacks the \(what)")
          }
          cursor += 8
          return value
        }
        if size32 == 0xFFFF_FFFF { size = try take("size") }
        if compressed32 == 0xFFFF_FFFF { compressed = try take("compressed size") }
        if local32 == 0xFFFF_FFFF { local = try take("header offset") }
      }
      if disk16 != 0 && disk16 != 0xFFFF {
        throw CheckpointError(.unsupported, path: file.path, "zip entry '\(name)' lies on another disk")
      }
      entries.append(
        CentralEntry(
          name: name, flags: flags, method: method, crc32: crc,
          compressedSize: try int64(compressed, "compressed size", file), size: try int64(size, "size", file),
          localHeaderOffset: try int64(local, "header offset", file)))
      position = next
    }
    return entries
  }

  /// The payload of the zip64 extra block (ID 0x0001) inside an extra field, if present.
  static func zip64Extra(_ extra: [UInt8]) -> [UInt8]? {
    let fields = ZipFields(extra)
    var position = 0
    while let id = fields.u16(position), let length = fields.u16(position + 2) {
      let start = position + 4
      let stop = start + Int(length)
      guard stop <= extra.count else { return nil }
      if id == 0x0001 { return Array(extra[start..<stop]) }
      position = stop
    }
    return nil
  }

  /// Reads the local header of `entry` to find its data; refuses what torch never writes.
  static func locate(_ entry: CentralEntry, file: ReadableFile, dataLimit: Int64) throws -> ZipEntry {
    let name = entry.name
    if entry.flags & 0x0001 != 0 {
      throw CheckpointError(.unsupported, path: file.path, "zip entry '\(name)' is encrypted")
    }
    if entry.method != 0 {
      throw CheckpointError(
        .unsupported, path: file.path,
        "zip entry '\(name)' is compressed (method \(entry.method)); only stored entries can be streamed")
    }
    guard entry.compressedSize == entry.size else {
      throw invalid(
        file, "stored zip entry '\(name)' has compressed size \(entry.compressedSize) != size \(entry.size)")
    }
    guard entry.localHeaderOffset <= dataLimit - 30 else {
      throw CheckpointError(
        .truncated, path: file.path, "zip entry '\(name)': local header at \(entry.localHeaderOffset) is past the data")
    }
    let header = ZipFields(try file.readBytes(at: entry.localHeaderOffset, count: 30))
    guard header.u32(0) == localSignature, let flags = header.u16(6), let method = header.u16(8),
      let compressed32 = header.u32(18), let size32 = header.u32(22), let nameLength = header.u16(26),
      let extraLength = header.u16(28)
    else { throw invalid(file, "zip entry '\(name)': no local header at \(entry.localHeaderOffset)") }
    if flags & 0x0001 != 0 {
      throw CheckpointError(.unsupported, path: file.path, "zip entry '\(name)' is encrypted")
    }
    guard method == 0 else {
      throw CheckpointError(.unsupported, path: file.path, "zip entry '\(name)' is compressed (method \(method))")
    }
    let localName = try file.readBytes(at: entry.localHeaderOffset + 30, count: Int(nameLength))
    guard localName.elementsEqual(entry.name.utf8) else {
      throw invalid(file, "zip entry '\(name)': local header names a different file")
    }
    var localSizes = [(UInt64(size32), "size"), (UInt64(compressed32), "compressed size")]
    if size32 == 0xFFFF_FFFF || compressed32 == 0xFFFF_FFFF {
      let extra = try file.readBytes(at: entry.localHeaderOffset + 30 + Int64(nameLength), count: Int(extraLength))
      guard let zip64 = zip64Extra(extra) else {
        throw invalid(file, "zip entry '\(name)': local header has saturated sizes but no zip64 extra field")
      }
      // The local zip64 extra holds both sizes; torch writes 0 for the compressed one.
      localSizes = [(ZipFields(zip64).u64(0) ?? 0, "size"), (ZipFields(zip64).u64(8) ?? 0, "compressed size")]
    }
    // Sizes may be 0 in the local header only when a data descriptor (flag bit 3) carries them.
    let hasDescriptor = flags & 0x0008 != 0
    for (value, what) in localSizes where (value != 0 || !hasDescriptor) && value != UInt64(entry.size) {
      throw invalid(
        file, "zip entry '\(name)': local header \(what) \(value) disagrees with the central directory's \(entry.size)")
    }
    let dataOffset = entry.localHeaderOffset + 30 + Int64(nameLength) + Int64(extraLength)
    let (dataEnd, overflow) = dataOffset.addingReportingOverflow(entry.size)
    guard !overflow, dataEnd <= dataLimit else {
      throw CheckpointError(
        .truncated, path: file.path,
        "zip entry '\(name)' (\(entry.size) bytes at \(dataOffset)) runs past the end of the data")
    }
    return ZipEntry(
      name: name, dataOffset: dataOffset, size: entry.size, crc32: entry.crc32,
      localHeaderOffset: entry.localHeaderOffset)
  }
}
