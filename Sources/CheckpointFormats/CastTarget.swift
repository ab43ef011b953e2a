/// What `--dtype` / `dtype =` asks for: keep every dtype, or cast floating tensors to one type.
public enum CastTarget: String, Sendable, Codable, CaseIterable {
  case keep
  case f32
  case f16
  case bf16

  /// The dtype a tensor of `dtype` is written as: castable floats (F16, BF16, F32, F64) take the target;
  /// integers, bool, fp8 and complex are never cast.
  public func outputDType(for dtype: DType) -> DType {
    guard dtype.isCastableFloat else { return dtype }
    switch self {
    case .keep: return dtype
    case .f32: return .f32
    case .f16: return .f16
    case .bf16: return .bf16
    }
  }
}
