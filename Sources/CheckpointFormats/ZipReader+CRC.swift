import CZlib

extension ZipReader {
  /// Streams `entry`'s bytes through zlib's CRC-32 and compares with the central directory.
  ///
  /// torch never checks CRCs (PyTorch builds miniz with CRC checks disabled), so this is opt-in.
  public func verifyCRC(_ entry: ZipEntry, scratch: UnsafeMutableRawBufferPointer) throws {
    var crc: UInt = CZlib.crc32(0, nil, 0)
    try FileRangeSource(file: file, offset: entry.dataOffset, byteCount: entry.size).stream(scratch: scratch) {
      chunk in
      guard let base = chunk.baseAddress else { return }
      crc = CZlib.crc32(crc, base.assumingMemoryBound(to: Bytef.self), uInt(chunk.count))
    }
    guard UInt32(truncatingIfNeeded: crc) == entry.crc32 else {
      throw CheckpointError(
        .mismatch, path: file.path,
        "zip entry '\(entry.name)' fails its CRC-32 check (stored \(entry.crc32), computed \(UInt32(truncatingIfNeeded: crc)))"
      )
    }
  }

  /// Checks the CRC-32 of every entry.
  public func verifyAllCRCs(scratch: UnsafeMutableRawBufferPointer) throws {
    for entry in entries { try verifyCRC(entry, scratch: scratch) }
  }
}
