/// Where a storage's bytes are: a contiguous byte range of a source file.
public struct StorageInfo: Sendable, Hashable {
  /// The storage key: the torch record key (`"0"`, `"1"`, ...) or, for safetensors, the tensor name.
  public var key: String
  /// The element type the storage was saved with.
  public var dtype: DType
  /// Absolute offset of the first byte in the file.
  public var fileOffset: Int64
  /// Length in bytes.
  public var byteCount: Int64

  public init(key: String, dtype: DType, fileOffset: Int64, byteCount: Int64) {
    self.key = key
    self.dtype = dtype
    self.fileOffset = fileOffset
    self.byteCount = byteCount
  }
}

/// One named tensor: a view into a storage (torch semantics: offset and strides count elements).
public struct TensorInfo: Sendable, Hashable {
  public var name: String
  public var dtype: DType
  public var shape: [Int]
  /// Strides in elements, one per dimension.
  public var strides: [Int]
  /// The key of the storage in `StateDict.storages`.
  public var storageKey: String
  /// Offset of element 0 in the storage, in elements.
  public var storageOffset: Int
  /// Saved as `torch.nn.Parameter` (`_rebuild_parameter`).
  public var isParameter: Bool
  public var requiresGrad: Bool

  public init(
    name: String, dtype: DType, shape: [Int], strides: [Int]? = nil, storageKey: String,
    storageOffset: Int = 0, isParameter: Bool = false, requiresGrad: Bool = false
  ) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
    self.strides = strides ?? TensorInfo.contiguousStrides(shape)
    self.storageKey = storageKey
    self.storageOffset = storageOffset
    self.isParameter = isParameter
    self.requiresGrad = requiresGrad
  }

  /// Number of elements (1 for a 0-dim tensor). Callers validate shapes before relying on this.
  public var elementCount: Int { shape.reduce(1, *) }

  /// Bytes the tensor occupies when written contiguously.
  public var byteCount: Int64 { Int64(elementCount) * Int64(dtype.byteSize) }

  /// True if the elements are laid out in C order without gaps (size-1 dims may have any stride).
  public var isContiguous: Bool {
    var expected = 1
    for dim in stride(from: shape.count - 1, through: 0, by: -1) {
      if shape[dim] == 0 { return true }
      if shape[dim] != 1 && strides[dim] != expected { return false }
      expected *= shape[dim]
    }
    return true
  }

  /// Row-major strides for a shape.
  public static func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var running = 1
    for dim in stride(from: shape.count - 1, through: 0, by: -1) {
      strides[dim] = running
      running *= Swift.max(shape[dim], 1)
    }
    return strides
  }
}

/// The weight file formats ckptd reads and writes.
public enum WeightFormat: String, Sendable, Codable, CaseIterable {
  /// A `torch.save` zip archive (or a legacy pre-1.6 file when reading).
  case torch = "bin"
  case safetensors
}

/// What a reader hands out: every tensor as a descriptor; bytes stay in the file until streamed.
public struct StateDict: Sendable {
  /// The file the descriptors point into; keeps its descriptor open.
  public var file: ReadableFile
  public var format: WeightFormat
  /// A finer description for `inspect`: "safetensors", "torch zip", "torch legacy".
  public var formatDetail: String
  /// Tensors in the order the file lists them (pickle order, or safetensors offset order).
  public var tensors: [TensorInfo]
  /// Storages by key.
  public var storages: [String: StorageInfo]
  /// safetensors `__metadata__` (empty for torch files).
  public var metadata: [String: String]

  public init(
    file: ReadableFile, format: WeightFormat, formatDetail: String, tensors: [TensorInfo],
    storages: [String: StorageInfo], metadata: [String: String] = [:]
  ) {
    self.file = file
    self.format = format
    self.formatDetail = formatDetail
    self.tensors = tensors
    self.storages = storages
    self.metadata = metadata
  }

  /// A tensor's bytes in C order, streamed from the file (gathering strided views).
  public func source(for tensor: TensorInfo) throws -> any TensorSource {
    guard let storage = storages[tensor.storageKey] else {
      throw CheckpointError(
        .invalidFormat, path: file.path, "tensor '\(tensor.name)' refers to missing storage '\(tensor.storageKey)'")
    }
    return try StridedSource(file: file, storage: storage, tensor: tensor)
  }
}
