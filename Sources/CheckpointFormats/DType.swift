/// The element types ckptd can carry between safetensors and torch files.
///
/// One table for both formats: the safetensors dtype string, the torch dtype name, the legacy typed
/// storage class torch pickles for it (nil where torch uses `UntypedStorage` and `_rebuild_tensor_v3`),
/// the element size and the order the safetensors writer sorts by.
public enum DType: String, CaseIterable, Sendable, Hashable, Codable {
  case bool = "BOOL"
  case u8 = "U8"
  case i8 = "I8"
  case i16 = "I16"
  case u16 = "U16"
  case i32 = "I32"
  case u32 = "U32"
  case i64 = "I64"
  case u64 = "U64"
  case f16 = "F16"
  case bf16 = "BF16"
  case f32 = "F32"
  case f64 = "F64"
  case f8e4m3 = "F8_E4M3"
  case f8e5m2 = "F8_E5M2"
  case c64 = "C64"

  /// The safetensors header spelling, e.g. `"F32"`.
  public var safetensorsName: String { rawValue }

  /// Bytes per element.
  public var byteSize: Int {
    switch self {
    case .bool, .u8, .i8, .f8e4m3, .f8e5m2: 1
    case .i16, .u16, .f16, .bf16: 2
    case .i32, .u32, .f32: 4
    case .i64, .u64, .f64, .c64: 8
    }
  }

  /// The torch dtype attribute name, e.g. `float32` for `torch.float32`.
  public var torchName: String {
    switch self {
    case .bool: "bool"
    case .u8: "uint8"
    case .i8: "int8"
    case .i16: "int16"
    case .u16: "uint16"
    case .i32: "int32"
    case .u32: "uint32"
    case .i64: "int64"
    case .u64: "uint64"
    case .f16: "float16"
    case .bf16: "bfloat16"
    case .f32: "float32"
    case .f64: "float64"
    case .f8e4m3: "float8_e4m3fn"
    case .f8e5m2: "float8_e5m2"
    case .c64: "complex64"
    }
  }

  /// The legacy typed storage class `torch.save` pickles for this dtype (`torch.FloatStorage`), or nil
  /// for the dtypes torch saves through `torch.storage.UntypedStorage` and `_rebuild_tensor_v3`.
  public var legacyStorageClass: String? {
    switch self {
    case .bool: "BoolStorage"
    case .u8: "ByteStorage"
    case .i8: "CharStorage"
    case .i16: "ShortStorage"
    case .i32: "IntStorage"
    case .i64: "LongStorage"
    case .f16: "HalfStorage"
    case .bf16: "BFloat16Storage"
    case .f32: "FloatStorage"
    case .f64: "DoubleStorage"
    case .c64: "ComplexFloatStorage"
    case .u16, .u32, .u64, .f8e4m3, .f8e5m2: nil
    }
  }

  /// Floating point types that `--dtype` may cast (fp8 is left unchanged on purpose).
  public var isCastableFloat: Bool {
    switch self {
    case .f16, .bf16, .f32, .f64: true
    default: false
    }
  }

  /// Rank in the safetensors `Dtype` enum; the reference writer sorts tensors by this, descending.
  public var safetensorsRank: Int {
    switch self {
    case .bool: 0
    case .u8: 4
    case .i8: 5
    case .f8e5m2: 6
    case .f8e4m3: 7
    case .i16: 11
    case .u16: 12
    case .f16: 13
    case .bf16: 14
    case .i32: 15
    case .u32: 16
    case .f32: 17
    case .c64: 18
    case .f64: 19
    case .i64: 20
    case .u64: 21
    }
  }

  /// Parses a safetensors dtype string; nil if unknown.
  public init?(safetensorsName: String) {
    self.init(rawValue: safetensorsName)
  }

  /// Parses a torch dtype attribute name, aliases included (`float`, `half`, `long`, ...).
  public init?(torchName: String) {
    let aliases: [String: DType] = [
      "float": .f32, "half": .f16, "double": .f64, "long": .i64, "int": .i32, "short": .i16,
      "cfloat": .c64,
    ]
    if let alias = aliases[torchName] {
      self = alias
      return
    }
    guard let match = DType.allCases.first(where: { $0.torchName == torchName }) else { return nil }
    self = match
  }

  /// Parses a legacy typed storage class name such as `FloatStorage`.
  public init?(legacyStorageClass: String) {
    guard let match = DType.allCases.first(where: { $0.legacyStorageClass == legacyStorageClass }) else {
      return nil
    }
    self = match
  }
}
