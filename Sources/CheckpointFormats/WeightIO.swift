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
  /// Sniffs the first bytes: `PK\x03\x04` is a torch zip, a pickle `PROTO` opcode is a legacy torch
  /// file, anything else is tried as safetensors.
  public static func detect(path: String) throws -> WeightFormat {
    let file = try ReadableFile(path: path)
    let head = try file.readBytes(at: 0, count: Int(Swift.min(file.size, 8)))
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
