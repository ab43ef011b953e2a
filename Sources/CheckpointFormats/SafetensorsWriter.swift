/// Streams tensors into a safetensors file laid out as the reference writer lays it out.
///
/// The layout matches `safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})` byte for
/// byte: tensors sorted by dtype rank descending then name (byte order), data contiguous in that order,
/// a compact JSON header (`__metadata__` first, then the tensors in offset order, fields `dtype`, `shape`,
/// `data_offsets`) padded with spaces to a multiple of 8.
public enum SafetensorsWriter {
  /// What `write` produced.
  public struct Summary: Sendable, Hashable {
    /// N, the JSON header length including padding.
    public var headerSize: Int
    /// Bytes of tensor data after the header.
    public var dataSize: Int64
    public var tensorCount: Int
    /// The whole file: 8 + N + data.
    public var fileSize: Int64 { 8 + Int64(headerSize) + dataSize }
  }

  /// Writes the header, then streams each tensor's `source` through `scratch` into `output`, checking
  /// that every source yields exactly the bytes its dtype and shape call for. Does not commit `output`.
  ///
  /// `metadata` is written sorted by key, with `format` always set to `"pt"` (transformers refuses other
  /// values for torch weights). Duplicate names, the name `__metadata__` and a header over
  /// `SafetensorsReader.maxHeaderSize` are refused.
  @discardableResult
  public static func write(
    tensors: [OutputTensor], metadata: [String: String], to output: OutputFile,
    scratch: UnsafeMutableRawBufferPointer
  ) throws -> Summary {
    let path = output.path
    let ordered = try order(tensors, path: path)
    let (header, dataSize) = try makeHeader(ordered, metadata: metadata, path: path)
    var prefix = [UInt8](repeating: 0, count: 8)
    for index in 0..<8 { prefix[index] = UInt8(truncatingIfNeeded: UInt64(header.count) >> (8 * UInt64(index))) }
    try output.write(prefix)
    try output.write(header)
    for tensor in ordered {
      try stream(tensor, to: output, scratch: scratch)
    }
    return Summary(headerSize: header.count, dataSize: dataSize, tensorCount: tensors.count)
  }

  /// The reference writer's order: dtype rank descending, then name ascending by UTF-8 bytes.
  static func order(_ tensors: [OutputTensor], path: String) throws -> [OutputTensor] {
    var names: Set<String> = []
    for tensor in tensors {
      guard tensor.name != "__metadata__" else {
        throw CheckpointError(.invalidFormat, path: path, "a tensor cannot be named __metadata__")
      }
      guard names.insert(tensor.name).inserted else {
        throw CheckpointError(.invalidFormat, path: path, "duplicate tensor name '\(tensor.name)'")
      }
    }
    return tensors.sorted { lhs, rhs in
      if lhs.dtype.safetensorsRank != rhs.dtype.safetensorsRank {
        return lhs.dtype.safetensorsRank > rhs.dtype.safetensorsRank
      }
      return lhs.name.utf8.lexicographicallyPrecedes(rhs.name.utf8)
    }
  }

  /// The padded JSON header for tensors already in write order, and the total data size.
  static func makeHeader(
    _ ordered: [OutputTensor], metadata: [String: String], path: String,
    limit: Int = SafetensorsReader.maxHeaderSize
  ) throws -> ([UInt8], Int64) {
    var fields = metadata
    fields["format"] = "pt"
    var header: [UInt8] = []
    header.append(contentsOf: #"{"__metadata__":{"#.utf8)
    let keys = fields.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    for (index, key) in keys.enumerated() {
      if index > 0 { header.append(0x2C) }
      JSONWriter.appendString(key, to: &header)
      header.append(0x3A)
      JSONWriter.appendString(fields[key] ?? "", to: &header)
    }
    header.append(0x7D)
    var offset = 0
    for tensor in ordered {
      let bytes = try byteCount(of: tensor, path: path)
      let (end, overflow) = offset.addingReportingOverflow(bytes)
      guard !overflow else { throw CheckpointError(.limitExceeded, path: path, "total tensor data is too large") }
      header.append(0x2C)
      JSONWriter.appendString(tensor.name, to: &header)
      header.append(contentsOf: #":{"dtype":""#.utf8)
      header.append(contentsOf: tensor.dtype.safetensorsName.utf8)
      header.append(contentsOf: #"","shape":["#.utf8)
      for (index, dim) in tensor.shape.enumerated() {
        if index > 0 { header.append(0x2C) }
        JSONWriter.appendInteger(dim, to: &header)
      }
      header.append(contentsOf: #"],"data_offsets":["#.utf8)
      JSONWriter.appendInteger(offset, to: &header)
      header.append(0x2C)
      JSONWriter.appendInteger(end, to: &header)
      header.append(contentsOf: "]}".utf8)
      offset = end
      if header.count > limit { break }
    }
    header.append(0x7D)
    let padded = (header.count + 7) / 8 * 8
    guard padded <= limit else {
      throw CheckpointError(
        .limitExceeded, path: path, "the safetensors header would exceed \(limit) bytes; split the file into shards")
    }
    header.append(contentsOf: repeatElement(0x20, count: padded - header.count))
    return (header, Int64(offset))
  }

  /// Bytes the tensor's dtype and shape call for; its source must agree.
  static func byteCount(of tensor: OutputTensor, path: String) throws -> Int {
    var count = tensor.dtype.byteSize
    for dim in tensor.shape {
      guard dim >= 0 else {
        throw CheckpointError(
          .invalidFormat, path: path, "tensor '\(tensor.name)': negative dimension in \(tensor.shape)")
      }
      let (product, overflow) = count.multipliedReportingOverflow(by: dim)
      guard !overflow else {
        throw CheckpointError(.limitExceeded, path: path, "tensor '\(tensor.name)': shape \(tensor.shape) is too large")
      }
      count = product
    }
    guard Int64(count) == tensor.source.byteCount else {
      throw CheckpointError(
        .mismatch, path: path,
        "tensor '\(tensor.name)': \(tensor.dtype.safetensorsName) \(tensor.shape) needs \(count) bytes "
          + "but its source has \(tensor.source.byteCount)")
    }
    return count
  }

  /// Streams one tensor, refusing a source that yields more or fewer bytes than it announced.
  static func stream(_ tensor: OutputTensor, to output: OutputFile, scratch: UnsafeMutableRawBufferPointer) throws {
    let expected = tensor.source.byteCount
    if let range = tensor.source.fileRange, output.canCopyInKernel {
      // Unchanged contiguous bytes: let the kernel copy them.
      guard range.offset >= 0, range.offset <= range.file.size - expected else {
        throw CheckpointError(
          .truncated, path: range.file.path, "tensor '\(tensor.name)' reaches past the end of the file")
      }
      try output.copy(from: range.file, offset: range.offset, count: expected, scratch: scratch) { bytes in
        try tensor.source.didCopy(bytes: bytes)
      }
      return
    }
    var written: Int64 = 0
    try tensor.source.stream(scratch: scratch) { chunk in
      guard Int64(chunk.count) <= expected - written else {
        throw CheckpointError(
          .mismatch, path: output.path, "tensor '\(tensor.name)': source yielded more than \(expected) bytes")
      }
      try output.write(chunk)
      written += Int64(chunk.count)
    }
    guard written == expected else {
      throw CheckpointError(
        .mismatch, path: output.path, "tensor '\(tensor.name)': source yielded \(written) of \(expected) bytes")
    }
  }
}
