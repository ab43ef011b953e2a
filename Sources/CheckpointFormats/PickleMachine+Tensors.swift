extension PickleMachine {
  /// `BINPERSID`: `("storage", class, key, location, numel)`, or the legacy 6-tuple whose last item is
  /// the (unsupported unless None) view metadata. The same key must always describe the same storage.
  mutating func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
    guard let items = pid.asTuple, items.count == 5 || items.count == 6, items[0].asString == "storage" else {
      throw fail(.forbidden, "refuses persistent id \(pid.kind) at byte \(opcodeStart); only storages are allowed")
    }
    guard case .global(let module, let cls) = items[1] else {
      throw fail(.invalidFormat, "storage persistent id at byte \(opcodeStart) has no storage class")
    }
    guard let key = items[2].asString, let location = items[3].asString, let numel = items[4].asInt else {
      throw fail(.invalidFormat, "storage persistent id at byte \(opcodeStart) is malformed")
    }
    if items.count == 6, case .none = items[5] {
    } else if items.count == 6 {
      throw fail(.unsupported, "storage '\(key)' is a legacy storage view, which is not supported")
    }
    guard numel >= 0 else { throw fail(.invalidFormat, "storage '\(key)' has negative size \(numel)") }
    var typed: DType?
    if cls == "UntypedStorage" || (module == "torch.storage" && cls == "TypedStorage") {
      typed = nil
    } else if module == "torch", let dtype = DType(legacyStorageClass: cls) {
      typed = dtype
    } else {
      throw fail(.unsupported, "storage '\(key)' has unsupported type \(module).\(cls)")
    }
    if cls == "TypedStorage" {
      throw fail(.unsupported, "storage '\(key)' is a torch.storage.TypedStorage, which is not supported")
    }
    let ref = PickleStorageRef(typedDType: typed, key: key, location: location, numel: numel)
    if let known = storages[key] {
      guard known.typedDType == typed, known.numel == numel else {
        throw fail(.invalidFormat, "storage '\(key)' is described inconsistently (byte \(opcodeStart))")
      }
    } else {
      guard storages.count < limits.maxTensors else {
        throw fail(.limitExceeded, "pickle names more than \(limits.maxTensors) storages")
      }
      storages[key] = ref
      storageOrder.append(key)
    }
    return .storage(ref)
  }

  /// The storage's size in bytes: numel elements of a typed storage, numel bytes of an untyped one.
  func storageBytes(_ ref: PickleStorageRef) throws -> Int64 {
    let (bytes, overflow) = ref.numel.multipliedReportingOverflow(by: Int64(ref.typedDType?.byteSize ?? 1))
    guard !overflow else { throw fail(.limitExceeded, "storage '\(ref.key)' size overflows") }
    return bytes
  }

  func intTuple(_ value: PickleValue, _ what: String) throws -> [Int] {
    guard let items = value.asTuple else {
      throw fail(.invalidFormat, "tensor \(what) at byte \(opcodeStart) is a \(value.kind), not a tuple")
    }
    guard items.count <= limits.maxRank else {
      throw fail(.limitExceeded, "tensor at byte \(opcodeStart) has rank \(items.count) (limit \(limits.maxRank))")
    }
    return try items.map { item in
      guard let v = item.asInt, v >= 0, v <= Int64(Int.max) else {
        throw fail(.invalidFormat, "tensor \(what) at byte \(opcodeStart) holds \(item.kind) that is not a size >= 0")
      }
      return Int(v)
    }
  }

  /// `_rebuild_tensor(storage, offset, size, stride)`, `_rebuild_tensor_v2(..., requires_grad, hooks[,
  /// metadata])`, `_rebuild_tensor_v3(..., requires_grad, hooks, dtype[, metadata])`.
  mutating func rebuildTensor(_ args: [PickleValue], version: Int) throws -> PickleValue {
    let counts = version == 1 ? [4] : version == 2 ? [6, 7] : [7, 8]
    guard counts.contains(args.count) else {
      throw fail(.invalidFormat, "_rebuild_tensor_v\(version) at byte \(opcodeStart) has \(args.count) arguments")
    }
    guard case .storage(let ref) = args[0] else {
      throw fail(.invalidFormat, "tensor at byte \(opcodeStart) is built from \(args[0].kind), not a storage")
    }
    guard let offset64 = args[1].asInt, offset64 >= 0, offset64 <= Int64(Int.max) else {
      throw fail(.invalidFormat, "tensor at byte \(opcodeStart) has a bad storage offset")
    }
    let shape = try intTuple(args[2], "size")
    let strides = try intTuple(args[3], "stride")
    guard shape.count == strides.count else {
      throw fail(.invalidFormat, "tensor at byte \(opcodeStart): size and stride ranks differ")
    }
    var requiresGrad = false
    if version >= 2 {
      guard case .bool(let flag) = args[4] else {
        throw fail(.invalidFormat, "tensor at byte \(opcodeStart): requires_grad is \(args[4].kind)")
      }
      requiresGrad = flag
    }
    var dtype = ref.typedDType
    if version == 3 {
      guard case .global("torch", let name) = args[6], PickleMachine.torchDTypeNames.contains(name) else {
        throw fail(.invalidFormat, "_rebuild_tensor_v3 at byte \(opcodeStart): dtype is \(args[6].kind)")
      }
      guard let named = DType(torchName: name) else {
        throw fail(.unsupported, "tensor dtype torch.\(name) is not supported")
      }
      if let typed = dtype, typed != named {
        throw fail(.unsupported, "tensor dtype torch.\(name) differs from its storage's \(typed.torchName)")
      }
      dtype = named
    }
    let metadataIndex = version == 2 ? 6 : 7
    if args.count > metadataIndex {
      switch args[metadataIndex] {
      case .none: break
      case .dict(let d) where d.entries.isEmpty: break
      default:
        throw fail(.unsupported, "tensor at byte \(opcodeStart) carries conj/neg metadata, which is not supported")
      }
    }
    guard let resolved = dtype else {
      throw fail(.invalidFormat, "tensor at byte \(opcodeStart) views an untyped storage without a dtype")
    }
    try bindStorage(ref, to: resolved)
    try checkExtent(ref, dtype: resolved, offset: Int(offset64), shape: shape, strides: strides)
    tensorCount += 1
    guard tensorCount <= limits.maxTensors else {
      throw fail(.limitExceeded, "pickle holds more than \(limits.maxTensors) tensors")
    }
    return .tensor(
      TensorInfo(
        name: "", dtype: resolved, shape: shape, strides: strides, storageKey: ref.key,
        storageOffset: Int(offset64), requiresGrad: requiresGrad))
  }

  /// Records the element type a storage is viewed with; one storage, one dtype.
  mutating func bindStorage(_ ref: PickleStorageRef, to dtype: DType) throws {
    if let bound = storageDTypes[ref.key] {
      guard bound == dtype else {
        throw fail(.unsupported, "storage '\(ref.key)' is viewed as both \(bound.torchName) and \(dtype.torchName)")
      }
      return
    }
    let bytes = try storageBytes(ref)
    guard bytes % Int64(dtype.byteSize) == 0 else {
      throw fail(.invalidFormat, "storage '\(ref.key)' of \(bytes) bytes does not hold whole \(dtype.torchName)s")
    }
    storageDTypes[ref.key] = dtype
  }

  /// Every element the view touches must lie inside the storage (overflow-checked).
  func checkExtent(_ ref: PickleStorageRef, dtype: DType, offset: Int, shape: [Int], strides: [Int]) throws {
    var count = 1
    var last = offset
    for (size, stride) in zip(shape, strides) {
      let (c, o1) = count.multipliedReportingOverflow(by: size)
      let (span, o2) = Swift.max(size - 1, 0).multipliedReportingOverflow(by: stride)
      let (l, o3) = last.addingReportingOverflow(span)
      let (_, o4) = c.multipliedReportingOverflow(by: dtype.byteSize)
      guard !o1, !o2, !o3, !o4 else {
        throw fail(.limitExceeded, "tensor at byte \(opcodeStart): size, stride or offset overflows")
      }
      count = c
      last = l
    }
    guard count > 0 else { return }
    let (end, overflow) = (Int64(last) + 1).multipliedReportingOverflow(by: Int64(dtype.byteSize))
    let storage = try storageBytes(ref)
    guard !overflow, end <= storage else {
      throw fail(
        .invalidFormat,
        "tensor at byte \(opcodeStart) reaches byte \(overflow ? Int64.max : end) of storage '\(ref.key)' (\(storage) bytes)"
      )
    }
  }

  /// `_rebuild_parameter(data, requires_grad, hooks)` and `_rebuild_parameter_with_state(..., state)`.
  func rebuildParameter(_ args: [PickleValue], withState: Bool) throws -> PickleValue {
    guard args.count == (withState ? 4 : 3), case .tensor(var tensor) = args[0], case .bool(let grad) = args[1] else {
      throw fail(.invalidFormat, "_rebuild_parameter at byte \(opcodeStart) has unexpected arguments")
    }
    tensor.isParameter = true
    tensor.requiresGrad = grad
    return .tensor(tensor)
  }
}
