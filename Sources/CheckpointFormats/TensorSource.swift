/// A stream of exactly `byteCount` bytes of one tensor, in C order, produced into the caller's buffer.
///
/// Writers drive sources with one reused scratch buffer; no source allocates per call in proportion to
/// the tensor's size.
public protocol TensorSource: Sendable {
  var byteCount: Int64 { get }
  /// Calls `body` with consecutive chunks that together make up the tensor's bytes. Chunks live in
  /// `scratch` (or another buffer owned by the source) and are valid only during the call.
  func stream(
    scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void
  ) throws
  /// The file range that holds exactly this source's bytes in order, when there is one (a contiguous
  /// tensor passed through unchanged): a writer that needs no checksum may then copy it in the kernel
  /// (`OutputFile.copy`) instead of calling `stream`. nil by default.
  var fileRange: FileRange? { get }
  /// Called by a writer that copied `bytes` of `fileRange` in the kernel instead of streaming them
  /// (progress and cancellation); may throw to stop. Does nothing by default.
  func didCopy(bytes: Int) throws
}

/// A byte range of a file: see `TensorSource.fileRange`.
public struct FileRange: Sendable {
  public let file: ReadableFile
  public let offset: Int64

  public init(file: ReadableFile, offset: Int64) {
    self.file = file
    self.offset = offset
  }
}

extension TensorSource {
  public var fileRange: FileRange? { nil }
  public func didCopy(bytes: Int) throws {}
}

/// A contiguous byte range of a file.
public struct FileRangeSource: TensorSource {
  public let file: ReadableFile
  public let offset: Int64
  public let byteCount: Int64

  public init(file: ReadableFile, offset: Int64, byteCount: Int64) {
    self.file = file
    self.offset = offset
    self.byteCount = byteCount
  }

  public var fileRange: FileRange? { FileRange(file: file, offset: offset) }

  public func stream(
    scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void
  ) throws {
    var done: Int64 = 0
    while done < byteCount {
      let n = Int(Swift.min(Int64(scratch.count), byteCount - done))
      let chunk = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<n])
      try file.read(at: offset + done, into: chunk)
      try body(UnsafeRawBufferPointer(chunk))
      done += Int64(n)
    }
  }
}

/// Bytes held in memory: small tensors in tests and pickled records.
public struct BytesSource: TensorSource {
  public let bytes: [UInt8]
  public init(_ bytes: [UInt8]) { self.bytes = bytes }
  public var byteCount: Int64 { Int64(bytes.count) }

  public func stream(
    scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void
  ) throws {
    try bytes.withUnsafeBytes { (raw) in
      var start = 0
      while start < raw.count {
        let end = Swift.min(raw.count, start + Swift.max(scratch.count, 1))
        try body(UnsafeRawBufferPointer(rebasing: raw[start..<end]))
        start = end
      }
    }
  }
}

/// A tensor view (offset, strides, stride-0 expansion) over a storage, gathered into C order.
///
/// Contiguous views read straight from the file. Other views are gathered without one `pread` per element
/// (see `StridedSource+Gather.swift`): a view whose storage span is small is read once and packed in memory,
/// a transposed view is read in bands of contiguous rows and transposed in memory, and anything else reads
/// each innermost contiguous run.
public struct StridedSource: TensorSource {
  public let file: ReadableFile
  public let storage: StorageInfo
  public let tensor: TensorInfo
  public let byteCount: Int64

  /// Validates that every element the view touches lies inside the storage (overflow-checked).
  public init(file: ReadableFile, storage: StorageInfo, tensor: TensorInfo) throws {
    self.file = file
    self.storage = storage
    self.tensor = tensor
    let itemSize = Int64(tensor.dtype.byteSize)
    guard tensor.shape.count == tensor.strides.count else {
      throw CheckpointError(.invalidFormat, path: file.path, "tensor '\(tensor.name)': shape and stride ranks differ")
    }
    var count: Int64 = 1
    var maxOffset: Int64 = Int64(tensor.storageOffset)
    var empty = false
    for (size, stride) in zip(tensor.shape, tensor.strides) {
      guard size >= 0, stride >= 0 else {
        throw CheckpointError(
          .invalidFormat, path: file.path, "tensor '\(tensor.name)': negative size or stride")
      }
      if size == 0 { empty = true }
      let (c, o1) = count.multipliedReportingOverflow(by: Int64(size))
      let (span, o2) = Int64(Swift.max(size - 1, 0)).multipliedReportingOverflow(by: Int64(stride))
      let (m, o3) = maxOffset.addingReportingOverflow(span)
      guard !o1, !o2, !o3 else {
        throw CheckpointError(.limitExceeded, path: file.path, "tensor '\(tensor.name)': size overflows")
      }
      count = c
      maxOffset = m
    }
    guard tensor.storageOffset >= 0 else {
      throw CheckpointError(.invalidFormat, path: file.path, "tensor '\(tensor.name)': negative storage offset")
    }
    let (bytes, o4) = count.multipliedReportingOverflow(by: itemSize)
    guard !o4 else {
      throw CheckpointError(.limitExceeded, path: file.path, "tensor '\(tensor.name)': size overflows")
    }
    if !empty {
      let (endElement, o5) = maxOffset.addingReportingOverflow(1)
      let (endByte, o6) = endElement.multipliedReportingOverflow(by: itemSize)
      guard !o5, !o6, endByte <= storage.byteCount else {
        throw CheckpointError(
          .invalidFormat, path: file.path,
          "tensor '\(tensor.name)' reaches past the end of its storage (\(storage.byteCount) bytes)")
      }
    }
    self.byteCount = bytes
  }

  public var fileRange: FileRange? {
    guard tensor.isContiguous else { return nil }
    return FileRange(
      file: file, offset: storage.fileOffset + Int64(tensor.storageOffset) * Int64(tensor.dtype.byteSize))
  }

  public func stream(
    scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void
  ) throws {
    guard byteCount > 0 else { return }
    let itemSize = tensor.dtype.byteSize
    let base = storage.fileOffset + Int64(tensor.storageOffset) * Int64(itemSize)
    if tensor.isContiguous {
      try FileRangeSource(file: file, offset: base, byteCount: byteCount).stream(scratch: scratch, body)
      return
    }
    try gather(base: base, itemSize: itemSize, scratch: scratch, body)
  }
}
