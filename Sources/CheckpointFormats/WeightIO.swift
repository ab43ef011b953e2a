/// One tensor to write to a safetensors file: the bytes come from `source`, in C order.
public struct OutputTensor: Sendable {
  public var name: String
  public var dtype: DType
  public var shape: [Int]
  public var source: any TensorSource

  public init(name: String, dtype: DType, shape: [Int], source: any TensorSource) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
    self.source = source
  }
}

/// One storage record of a torch file: `source.byteCount` bytes of `dtype` elements.
public struct OutputStorage: Sendable {
  public var key: String
  public var dtype: DType
  public var source: any TensorSource

  public init(key: String, dtype: DType, source: any TensorSource) {
    self.key = key
    self.dtype = dtype
    self.source = source
  }
}

/// The reused buffer that every streaming read and write goes through.
public enum StreamBuffer {
  /// Size of the one scratch buffer a conversion uses.
  public static let defaultSize = 8 << 20

  /// Runs `body` with a freshly allocated scratch buffer of `size` bytes, freed afterwards.
  @discardableResult
  public static func with<T>(
    size: Int = defaultSize, _ body: (UnsafeMutableRawBufferPointer) throws -> T
  ) rethrows -> T {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
    defer { buffer.deallocate() }
    return try body(buffer)
  }
}

/// Opens any weight file ckptd understands, deciding by content, not by name.
public enum WeightFile {
  /// Sniffs the first bytes. A safetensors file is recognised first (a little-endian header length
  /// followed by `{`): its length can start with any byte, 0x80 and `PK` included. Otherwise `PK\x03\x04` is a
  /// torch zip and a pickle `PROTO` opcode (0x80) a legacy torch file; anything else is tried as safetensors,
  /// whose reader says what is wrong.
  public static func detect(path: String) throws -> WeightFormat {
    let file = try ReadableFile(path: path)
    let head = try file.readBytes(at: 0, count: Int(Swift.min(file.size, 9)))
    // The read-ahead behind these 9 bytes is not needed again soon.
    file.releaseCache()
    if head.count == 9, head[8] == UInt8(ascii: "{") {
      let length = head[0..<8].reversed().reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
      if length >= 2, length <= UInt64(SafetensorsReader.maxHeaderSize) { return .safetensors }
    }
    if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) { return .torch }
    if head.first == 0x80 { return .torch }
    return .safetensors
  }

  /// Reads the descriptors of every tensor in the file.
  public static func open(path: String) throws -> StateDict {
    switch try detect(path: path) {
    case .torch: try TorchReader.read(path: path)
    case .safetensors: try SafetensorsReader.read(path: path)
    }
  }
}
