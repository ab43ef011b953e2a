extension ZipReader {
  /// Streams `entry`'s bytes through the CRC-32 and compares with the central directory.
  ///
  /// torch never checks CRCs (PyTorch builds miniz with CRC checks disabled), so this is opt-in.
  public func verifyCRC(_ entry: ZipEntry, scratch: UnsafeMutableRawBufferPointer) throws {
    var crc = CRC32()
    try FileRangeSource(file: file, offset: entry.dataOffset, byteCount: entry.size).stream(scratch: scratch) {
      chunk in crc.update(chunk)
    }
    guard crc.value == entry.crc32 else {
      throw CheckpointError(
        .mismatch, path: file.path,
        "zip entry '\(entry.name)' fails its CRC-32 check (stored \(entry.crc32), computed \(crc.value))"
      )
    }
  }

  /// Checks the CRC-32 of every entry.
  public func verifyAllCRCs(scratch: UnsafeMutableRawBufferPointer) throws {
    for entry in entries { try verifyCRC(entry, scratch: scratch) }
  }
}
