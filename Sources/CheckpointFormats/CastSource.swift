/// A tensor's bytes cast from one floating dtype to another while they stream (`DTypeCast`).
///
/// The caller's scratch is split in two: the inner source fills the front part, the cast elements go
/// into the back part (no allocation, so memory stays flat). Chunks that split an element are
/// handled. Same-dtype "casts" pass the inner stream through.
public struct CastSource: TensorSource {
  public let inner: any TensorSource
  public let from: DType
  public let to: DType
  /// Bytes after the cast.
  public let byteCount: Int64

  /// Fails if the pair is not castable or the inner size is not a whole number of elements.
  public init(inner: any TensorSource, from: DType, to: DType) throws {
    guard from == to || DTypeCast.isSupported(from: from, to: to) else {
      throw CheckpointError(.unsupported, path: "", "cannot cast \(from.rawValue) to \(to.rawValue)")
    }
    guard inner.byteCount >= 0, inner.byteCount % Int64(from.byteSize) == 0 else {
      throw CheckpointError(
        .invalidFormat, path: "", "\(inner.byteCount) bytes are not a whole number of \(from.rawValue) elements")
    }
    self.inner = inner
    self.from = from
    self.to = to
    self.byteCount = inner.byteCount / Int64(from.byteSize) * Int64(to.byteSize)
  }

  /// The inner range when nothing is cast.
  public var fileRange: FileRange? { from == to ? inner.fileRange : nil }

  public func didCopy(bytes: Int) throws { try inner.didCopy(bytes: bytes) }

  public func stream(
    scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void
  ) throws {
    if from == to {
      try inner.stream(scratch: scratch, body)
      return
    }
    guard byteCount > 0 else { return }
    let inSize = from.byteSize
    let outSize = to.byteSize
    // The caller's scratch is split: raw elements in front, their cast behind; no buffer of our own.
    let perPiece = scratch.count / (inSize + outSize)
    guard perPiece >= 1 else {
      throw CheckpointError(.invalidFormat, path: "", "scratch buffer smaller than one element")
    }
    let inputBytes = perPiece * inSize
    let input = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<inputBytes])
    let output = UnsafeMutableRawBufferPointer(rebasing: scratch[inputBytes..<(inputBytes + perPiece * outSize)])
    // A partial element left at the end of a chunk (at most 7 bytes).
    var carry: [UInt8] = []
    carry.reserveCapacity(8)
    try inner.stream(scratch: input) { (chunk) in
      var rest = chunk
      if !carry.isEmpty {
        let take = Swift.min(inSize - carry.count, rest.count)
        carry.append(contentsOf: rest[0..<take])
        rest = UnsafeRawBufferPointer(rebasing: rest[take...])
        if carry.count == inSize {
          try carry.withUnsafeBytes { (element) in
            let n = try DTypeCast.convert(element, from: from, to: to, into: output)
            try body(UnsafeRawBufferPointer(rebasing: output[0..<n]))
          }
          carry.removeAll(keepingCapacity: true)
        }
      }
      while rest.count >= inSize {
        let elements = Swift.min(perPiece, rest.count / inSize)
        let piece = UnsafeRawBufferPointer(rebasing: rest[0..<(elements * inSize)])
        let n = try DTypeCast.convert(piece, from: from, to: to, into: output)
        try body(UnsafeRawBufferPointer(rebasing: output[0..<n]))
        rest = UnsafeRawBufferPointer(rebasing: rest[(elements * inSize)...])
      }
      carry.append(contentsOf: rest)
    }
    guard carry.isEmpty else {
      throw CheckpointError(.truncated, path: "", "cast input ended inside an element")
    }
  }
}
