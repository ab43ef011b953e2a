extension PickleWriter {
  /// One tensor of the state dict as the pickle describes it.
  public struct TensorEntry: Sendable, Hashable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var strides: [Int]
    public var storageOffset: Int
    /// The record key (`"0"`, `"1"`, ...) of the storage.
    public var storageKey: String
    /// The storage size in bytes.
    public var storageByteCount: Int64
    public var isParameter: Bool
    public var requiresGrad: Bool

    public init(
      name: String, dtype: DType, shape: [Int], strides: [Int], storageOffset: Int, storageKey: String,
      storageByteCount: Int64, isParameter: Bool = false, requiresGrad: Bool = false
    ) {
      self.name = name
      self.dtype = dtype
      self.shape = shape
      self.strides = strides
      self.storageOffset = storageOffset
      self.storageKey = storageKey
      self.storageByteCount = storageByteCount
      self.isParameter = isParameter
      self.requiresGrad = requiresGrad
    }
  }

  /// CPython's `_BATCHSIZE` for SETITEMS.
  static let batchSize = 1000

  /// The complete `data.pkl` of `torch.save({name: tensor, ...})`: a plain dict whose values are
  /// `_rebuild_tensor_v2` calls (or `_rebuild_tensor_v3` with `UntypedStorage` for dtypes without a
  /// legacy storage class), wrapped in `_rebuild_parameter` for parameters.
  public static func stateDict(_ tensors: [TensorEntry]) -> [UInt8] {
    var pickle = PickleWriter()
    pickle.proto()
    pickle.emptyDict()
    var start = 0
    while true {
      let end = Swift.min(start + batchSize, tensors.count)
      let batch = tensors[start..<end]
      if batch.count > 1 { pickle.mark() }
      for tensor in batch {
        pickle.string(tensor.name)
        pickle.tensor(tensor)
      }
      if batch.count > 1 {
        pickle.setItems()
      } else if batch.count == 1 {
        pickle.setItem()
      }
      if batch.count < batchSize { break }
      start = end
    }
    pickle.stop()
    return pickle.bytes
  }

  /// Pushes one tensor (or parameter) value.
  mutating func tensor(_ tensor: TensorEntry) {
    if tensor.isParameter {
      global("torch._utils", "_rebuild_parameter")
      rebuildTensor(tensor, requiresGrad: false)
      bool(tensor.requiresGrad)
      emptyOrderedDict()
      tuple(count: 3)
      reduce()
    } else {
      rebuildTensor(tensor, requiresGrad: tensor.requiresGrad)
    }
  }

  /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())`, or v3 with the
  /// dtype appended.
  mutating func rebuildTensor(_ tensor: TensorEntry, requiresGrad: Bool) {
    let storageClass = tensor.dtype.legacyStorageClass
    global("torch._utils", storageClass == nil ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2")
    mark()
    // The persistent id ("storage", class, key, location, numel).
    mark()
    sharedString("storage")
    if let storageClass {
      global("torch", storageClass)
    } else {
      global("torch.storage", "UntypedStorage")
    }
    sharedString(tensor.storageKey)
    sharedString("cpu")
    let itemSize = Int64(tensor.dtype.byteSize)
    int(Int(storageClass == nil ? tensor.storageByteCount : tensor.storageByteCount / itemSize))
    tuple(count: 5)
    persistentID()
    int(tensor.storageOffset)
    intTuple(tensor.shape)
    intTuple(tensor.strides)
    bool(requiresGrad)
    emptyOrderedDict()
    if storageClass == nil { global("torch", tensor.dtype.torchName) }
    tuple(count: storageClass == nil ? 7 : 6)
    reduce()
  }

  /// `collections.OrderedDict()` (the empty backward hooks).
  mutating func emptyOrderedDict() {
    global("collections", "OrderedDict")
    emptyTuple()
    reduce()
  }
}
