/// Reads and validates a safetensors file; tensors are handed out as byte ranges, not loaded.
///
/// Layout: `u64 LE N` | N bytes of UTF-8 JSON | byte buffer. Every rule of the reference reader is
/// enforced (see `SafetensorsHeader`), plus: N at most `maxHeaderSize`, and the file ends exactly where
/// the last tensor's data ends. A file that is shorter than its header promises is `.truncated` (the
/// daemon reads that as "still being written"); trailing bytes are `.invalidFormat`. N need not be a
/// multiple of 8 (safetensors 0.3.0 wrote unaligned headers).
public enum SafetensorsReader {
  /// The reference reader's `MAX_HEADER_SIZE`: a header at or under this many bytes loads.
  public static let maxHeaderSize = 100_000_000

  /// Reads the header of the safetensors file at `path` and returns every tensor as a descriptor (in
  /// offset order, contiguous strides, one storage per tensor keyed by its name).
  public static func read(path: String) throws -> StateDict {
    let file = try ReadableFile(path: path)
    let layout = try readLayout(file)
    try checkFileSize(file.size, expected: layout.expectedFileSize, path: path)
    return StateDict(
      file: file, format: .safetensors, formatDetail: "safetensors", tensors: layout.tensors,
      storages: layout.storages, metadata: layout.metadata)
  }

  /// The size the complete file must have according to its header (8 + N + end of the last tensor),
  /// without requiring the data to be there yet. Throws `.truncated` while the header itself is incomplete.
  public static func expectedFileSize(path: String) throws -> Int64 {
    try readLayout(try ReadableFile(path: path)).expectedFileSize
  }

  /// Reads the length prefix and parses the header of an open file.
  static func readLayout(_ file: ReadableFile) throws -> SafetensorsLayout {
    let path = file.path
    guard file.size >= 8 else {
      throw CheckpointError(
        .truncated, path: path, "file has \(file.size) bytes; a safetensors file starts with an 8-byte header length")
    }
    let prefix = try file.readBytes(at: 0, count: 8)
    var length: UInt64 = 0
    for (index, byte) in prefix.enumerated() { length |= UInt64(byte) << (8 * UInt64(index)) }
    guard length <= UInt64(maxHeaderSize) else {
      throw CheckpointError(
        .limitExceeded, path: path,
        "header length \(length) exceeds the \(maxHeaderSize)-byte limit (or this is not a safetensors file)")
    }
    let headerSize = Int(length)
    guard Int64(8 + headerSize) <= file.size else {
      let missing = Int64(8 + headerSize) - file.size
      throw CheckpointError(
        .truncated, path: path, "header says \(headerSize) bytes but file has \(file.size) (\(missing) bytes missing)")
    }
    let header = try file.readBytes(at: 8, count: headerSize)
    return try SafetensorsHeader.parse(header, path: path)
  }

  /// The file must end exactly where the data ends.
  static func checkFileSize(_ size: Int64, expected: Int64, path: String) throws {
    if size < expected {
      throw CheckpointError(
        .truncated, path: path,
        "file has \(size) bytes but its header describes \(expected) (\(expected - size) bytes missing)")
    }
    if size > expected {
      throw CheckpointError(
        .invalidFormat, path: path,
        "\(size - expected) trailing bytes after the tensor data (file has \(size) bytes, data ends at \(expected))")
    }
  }
}
