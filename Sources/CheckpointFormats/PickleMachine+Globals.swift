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

  /// Resolves a `GLOBAL` against the allowlist. The result is only a name; nothing is imported.
  func resolveGlobal(module: String, name: String) throws -> PickleValue {
    let full = "\(module).\(name)"
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

  /// `NEWOBJ`: only `OrderedDict()` is built this way.
  func newObject(_ cls: PickleValue, _ args: PickleValue) throws -> PickleValue {
    guard case .global("collections", "OrderedDict") = cls, args.asTuple?.isEmpty == true else {
      throw fail(.forbidden, "refuses NEWOBJ of \(cls.kind) at byte \(opcodeStart)")
    }
    return .dict(PickleDict(ordered: true))
  }

  /// `REDUCE`: applies an allowed callable symbolically.
  mutating func reduce(_ callable: PickleValue, _ argsValue: PickleValue) throws -> PickleValue {
    guard case .global(let module, let name) = callable else {
      throw fail(.forbidden, "refuses REDUCE on \(callable.kind) at byte \(opcodeStart)")
    }
    guard let args = argsValue.asTuple else {
      throw fail(.invalidFormat, "pickle REDUCE at byte \(opcodeStart) has \(argsValue.kind) arguments")
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
