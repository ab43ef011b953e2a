extension PickleMachine {
  /// The callables `REDUCE` may apply (symbolically).
  static let allowedCallables: Set<String> = [
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.Size",
  ]

  /// Every storage class torch pickles; those without a `DType` are refused as unsupported when used.
  static let storageClasses: Set<String> = [
    "DoubleStorage", "FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
    "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "ComplexFloatStorage", "ComplexDoubleStorage",
    "QInt8Storage", "QUInt8Storage", "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage", "UntypedStorage",
  ]

  /// Every torch dtype name; those without a `DType` are refused as unsupported when used.
  static let torchDTypeNames: Set<String> = {
    var names: Set<String> = [
      "float32", "float", "float64", "double", "float16", "half", "bfloat16", "complex32", "chalf", "complex64",
      "cfloat", "complex128", "cdouble", "uint8", "int8", "int16", "short", "int32", "int", "int64", "long",
      "uint16", "uint32", "uint64", "bool", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
      "float8_e8m0fnu", "float4_e2m1fn_x2", "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "bits1x8",
      "bits2x4", "bits4x2", "bits8", "bits16",
    ]
    for bits in 1...7 {
      names.insert("uint\(bits)")
      names.insert("int\(bits)")
    }
    return names
  }()

  /// Classes of DeepSpeed ZeRO and torch DCP files that become inert `PickleObject` records (only with
  /// `distributedGlobals`): built by `NEWOBJ` or `REDUCE`, given state by `BUILD`, never constructed.
  static let distributedRecordTypes: Set<String> = [
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
    "torch.distributed.checkpoint.metadata.Metadata",
    "torch.distributed.checkpoint.metadata.TensorStorageMetadata",
    "torch.distributed.checkpoint.metadata.BytesStorageMetadata",
    "torch.distributed.checkpoint.metadata.TensorProperties",
    "torch.distributed.checkpoint.metadata.ChunkStorageMetadata",
    "torch.distributed.checkpoint.metadata.MetadataIndex",
    "torch.distributed.checkpoint.metadata.StorageMeta",
    "torch.distributed.checkpoint.metadata._MEM_FORMAT_ENCODING",
    "torch.distributed.checkpoint.filesystem._StorageInfo",
    "torch.serialization._get_layout",
    "pathlib.PosixPath",
    "pathlib._local.PosixPath",
  ]

  /// Further names distributed files use: the ZeRO-3 tensor subclass wrapper and its class argument.
  static let distributedNames: Set<String> = ["torch._tensor._rebuild_from_type_v2", "torch.Tensor"]

  /// Resolves a `GLOBAL` against the allowlist. The result is only a name; nothing is imported.
  func resolveGlobal(module: String, name: String) throws -> PickleValue {
    let full = "\(module).\(name)"
    if distributedGlobals,
      PickleMachine.distributedRecordTypes.contains(full) || PickleMachine.distributedNames.contains(full)
    {
      return .global(module: module, name: name)
    }
    let allowed: Bool
    switch module {
    case "torch":
      allowed =
        PickleMachine.allowedCallables.contains(full) || PickleMachine.storageClasses.contains(name)
        || PickleMachine.torchDTypeNames.contains(name)
    case "torch.storage":
      allowed = name == "UntypedStorage" || name == "TypedStorage"
    default:
      allowed = PickleMachine.allowedCallables.contains(full)
    }
    guard allowed else {
      throw fail(.forbidden, "refuses global \(full) (byte \(opcodeStart)); only state-dict globals are allowed")
    }
    return .global(module: module, name: name)
  }

  /// `NEWOBJ`: only `OrderedDict()` is built this way, and (distributed files) inert records.
  func newObject(_ cls: PickleValue, _ args: PickleValue) throws -> PickleValue {
    if let record = try distributedRecord(cls, args) { return record }
    guard case .global("collections", "OrderedDict") = cls, args.asTuple?.isEmpty == true else {
      throw fail(.forbidden, "refuses NEWOBJ of \(cls.kind) at byte \(opcodeStart)")
    }
    return .dict(PickleDict(ordered: true))
  }

  /// `REDUCE`: applies an allowed callable symbolically.
  func reduce(_ callable: PickleValue, _ argsValue: PickleValue) throws -> PickleValue {
    guard case .global(let module, let name) = callable else {
      throw fail(.forbidden, "refuses REDUCE on \(callable.kind) at byte \(opcodeStart)")
    }
    guard let args = argsValue.asTuple else {
      throw fail(.invalidFormat, "pickle REDUCE at byte \(opcodeStart) has \(argsValue.kind) arguments")
    }
    if let record = try distributedRecord(callable, argsValue) { return record }
    if distributedGlobals, module == "torch._tensor", name == "_rebuild_from_type_v2" {
      return try rebuildFromType(args)
    }
    switch "\(module).\(name)" {
    case "collections.OrderedDict":
      return try orderedDict(args)
    case "torch._utils._rebuild_tensor":
      return try rebuildTensor(args, version: 1)
    case "torch._utils._rebuild_tensor_v2":
      return try rebuildTensor(args, version: 2)
    case "torch._utils._rebuild_tensor_v3":
      return try rebuildTensor(args, version: 3)
    case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
      return try rebuildParameter(args, withState: name == "_rebuild_parameter_with_state")
    case "torch.Size":
      guard args.count == 1, case .tuple = args[0] else {
        throw fail(.invalidFormat, "torch.Size at byte \(opcodeStart) needs one tuple")
      }
      return args[0]
    default:
      throw fail(.forbidden, "refuses to call \(module).\(name) (byte \(opcodeStart))")
    }
  }

  /// `OrderedDict()` or `OrderedDict([(key, value), ...])`.
  func orderedDict(_ args: [PickleValue]) throws -> PickleValue {
    let dict = PickleDict(ordered: true)
    if args.isEmpty { return .dict(dict) }
    guard args.count == 1, case .list(let pairs) = args[0] else {
      throw fail(.unsupported, "OrderedDict at byte \(opcodeStart) built from unsupported arguments")
    }
    for pair in pairs.items {
      guard let items = pair.asTuple, items.count == 2 else {
        throw fail(.unsupported, "OrderedDict at byte \(opcodeStart) built from a list of non-pairs")
      }
      dict.depth = try depthAfterAdding(items[0], to: dict.depth)
      dict.depth = try depthAfterAdding(items[1], to: dict.depth)
      dict.set(items[0], items[1])
    }
    return .dict(dict)
  }
}

extension PickleMachine {
  /// An inert record when `cls` is one of `distributedRecordTypes` (and they are enabled), else nil.
  func distributedRecord(_ cls: PickleValue, _ argsValue: PickleValue) throws -> PickleValue? {
    guard distributedGlobals, case .global(let module, let name) = cls,
      PickleMachine.distributedRecordTypes.contains("\(module).\(name)")
    else { return nil }
    guard let args = argsValue.asTuple else {
      throw fail(.invalidFormat, "\(module).\(name) at byte \(opcodeStart) built from \(argsValue.kind)")
    }
    let record = PickleObject(type: "\(module).\(name)", args: args)
    guard record.depth <= limits.maxDepth else {
      throw fail(.limitExceeded, "pickle nests containers deeper than \(limits.maxDepth)")
    }
    for arg in args { adopt(arg) }
    return .object(record)
  }

  /// `BUILD` on an inert record: the state is kept as data, once.
  func buildRecord(_ record: PickleObject, _ state: PickleValue) throws {
    guard record.state == nil, !record.nested else {
      throw fail(.unsupported, "pickle BUILDs \(record.type) twice or after nesting it (byte \(opcodeStart))")
    }
    record.depth = try depthAfterAdding(state, to: record.depth)
    adopt(state)
    record.state = state
  }

  /// `_rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, args, state)`: ZeRO-3's flat groups. Only
  /// this exact form is accepted; the attribute dict (`ds_id`) is ignored.
  func rebuildFromType(_ args: [PickleValue]) throws -> PickleValue {
    guard args.count == 4, case .global("torch._utils", "_rebuild_tensor_v2") = args[0],
      case .global("torch", "Tensor") = args[1], let inner = args[2].asTuple
    else {
      throw fail(.forbidden, "refuses _rebuild_from_type_v2 at byte \(opcodeStart) other than a torch.Tensor rebuild")
    }
    return try rebuildTensor(inner, version: 2)
  }
}
