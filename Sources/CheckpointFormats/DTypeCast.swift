/// Element conversions between the floating types `--dtype` casts (F64, F32, F16, BF16), bit for bit as
/// torch 2.15's `Tensor.to(dtype)` on CPU produces them.
///
/// - Finite values round to nearest, ties to even; overflow gives ±inf; subnormals are kept; ±0 and
///   ±inf are kept.
/// - F64 to F16/BF16 goes through F32 (two roundings), as torch does.
/// - NaN stays NaN. Where torch's result depends on the kernel path (F16 to F32, F64 to BF16) the
///   IEEE hardware result (quiet NaN, payload kept as far as it fits) resp. torch's vectorised result is
///   used: F32/F64 to BF16 give 0xFFFF, F16 to BF16 gives 0x7FC0, widening quiets the NaN and keeps its
///   payload, narrowing to F16 or F32 quiets it and truncates the payload.
public enum DTypeCast {
  /// Whether `convert` handles this pair (both castable floats).
  public static func isSupported(from: DType, to: DType) -> Bool {
    from.isCastableFloat && to.isCastableFloat
  }

  /// Converts every element of `input` (a whole number of `from` elements) into `output`, which must
  /// hold at least as many `to` elements. Returns the number of bytes written. Buffers need no
  /// particular alignment.
  @discardableResult
  public static func convert(
    _ input: UnsafeRawBufferPointer, from: DType, to: DType, into output: UnsafeMutableRawBufferPointer
  ) throws -> Int {
    guard isSupported(from: from, to: to) else {
      throw CheckpointError(.unsupported, path: "", "cannot cast \(from.rawValue) to \(to.rawValue)")
    }
    let count = input.count / from.byteSize
    guard input.count % from.byteSize == 0, output.count >= count * to.byteSize else {
      throw CheckpointError(
        .invalidFormat, path: "",
        "cast buffer sizes do not match: \(input.count) bytes of \(from.rawValue) into \(output.count) bytes")
    }
    guard count > 0, let src = input.baseAddress, let dst = output.baseAddress else { return 0 }
    switch (from, to) {
    case (.f32, .bf16): floatToBFloat16(src, dst, count)
    case (.f32, .f16): map(src, dst, count, halfBits(fromFloatBits:))
    case (.f32, .f64): map(src, dst, count) { (bits: UInt32) in Double(Float(bitPattern: bits)).bitPattern }
    case (.bf16, .f32): map(src, dst, count, floatBits(fromBFloat16Bits:))
    case (.bf16, .f16):
      map(src, dst, count) { (bits: UInt16) in halfBits(fromFloatBits: floatBits(fromBFloat16Bits: bits)) }
    case (.bf16, .f64):
      map(src, dst, count) { (bits: UInt16) in Double(Float(bitPattern: floatBits(fromBFloat16Bits: bits))).bitPattern }
    case (.f16, .f32): map(src, dst, count, floatBits(fromHalfBits:))
    case (.f16, .bf16): map(src, dst, count, bfloat16Bits(fromHalfBits:))
    case (.f16, .f64): map(src, dst, count, doubleBits(fromHalfBits:))
    case (.f64, .f32): map(src, dst, count) { (bits: UInt64) in Float(Double(bitPattern: bits)).bitPattern }
    case (.f64, .f16):
      map(src, dst, count) { (bits: UInt64) in halfBits(fromFloatBits: Float(Double(bitPattern: bits)).bitPattern) }
    case (.f64, .bf16):
      map(src, dst, count) { (bits: UInt64) in bfloat16Bits(fromFloatBits: Float(Double(bitPattern: bits)).bitPattern) }
    default:
      (dst).copyMemory(from: src, byteCount: count * from.byteSize)
    }
    return count * to.byteSize
  }

  /// Applies `transform` to `count` unaligned elements.
  @inline(__always)
  static func map<In: FixedWidthInteger, Out: FixedWidthInteger>(
    _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, _ count: Int, _ transform: (In) -> Out
  ) {
    for index in 0..<count {
      let value = src.loadUnaligned(fromByteOffset: index &* MemoryLayout<In>.size, as: In.self)
      dst.storeBytes(of: transform(value), toByteOffset: index &* MemoryLayout<Out>.size, as: Out.self)
    }
  }

  /// The F32 -> BF16 loop without a branch per element, so that the compiler vectorises it (the hot cast:
  /// checkpoints saved in F32 and shipped in BF16).
  static func floatToBFloat16(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, _ count: Int) {
    for index in 0..<count {
      let bits = src.loadUnaligned(fromByteOffset: index &* 4, as: UInt32.self)
      let rounded = UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
      let value = bits & 0x7FFF_FFFF > 0x7F80_0000 ? 0xFFFF : rounded
      dst.storeBytes(of: value, toByteOffset: index &* 2, as: UInt16.self)
    }
  }

  /// F32 -> BF16, round to nearest even; NaN -> 0xFFFF (torch's vectorised CPU kernel).
  @inline(__always)
  public static func bfloat16Bits(fromFloatBits bits: UInt32) -> UInt16 {
    if bits & 0x7FFF_FFFF > 0x7F80_0000 { return 0xFFFF }
    return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
  }

  /// BF16 -> F32: exact (the top half of the F32 bits; NaN payloads kept unchanged).
  @inline(__always)
  public static func floatBits(fromBFloat16Bits bits: UInt16) -> UInt32 { UInt32(bits) << 16 }

  /// F32 -> F16, round to nearest even, IEEE NaN handling (quiet, payload truncated), as the F16C
  /// instruction and compiler-rt do. Bit arithmetic (F. Giesen's `float_to_half_fast3_rtne`), since the
  /// library conversion is a slow call per element.
  @inline(__always)
  public static func halfBits(fromFloatBits bits: UInt32) -> UInt16 {
    let sign = bits & 0x8000_0000
    let magnitude = bits ^ sign
    let result: UInt32
    if magnitude >= 0x4780_0000 {
      // Overflow to infinity, infinity, or NaN (quieted, top payload bits kept).
      result = magnitude > 0x7F80_0000 ? 0x7E00 | ((magnitude >> 13) & 0x03FF) : 0x7C00
    } else if magnitude < 0x3880_0000 {
      // Subnormal or zero in F16: let the FPU round by adding a magic number.
      let magic: UInt32 = 0x3F00_0000
      let sum = Float(bitPattern: magnitude) + Float(bitPattern: magic)
      result = sum.bitPattern &- magic
    } else {
      let odd = (magnitude >> 13) & 1
      result = (magnitude &+ 0xC800_0FFF &+ odd) >> 13
    }
    return UInt16(truncatingIfNeeded: result | sign >> 16)
  }

  /// F16 -> F32: exact; a NaN is quieted and keeps its payload.
  @inline(__always)
  public static func floatBits(fromHalfBits bits: UInt16) -> UInt32 {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = bits & 0x7C00
    let mantissa = UInt32(bits & 0x03FF)
    if exponent == 0x7C00 {
      return sign | 0x7F80_0000 | (mantissa == 0 ? 0 : 0x0040_0000 | mantissa << 13)
    }
    if exponent == 0 {
      // Zero or subnormal: mantissa * 2^-24 is exact in F32.
      return sign | (Float(mantissa) * 0x1p-24).bitPattern
    }
    return sign | (UInt32(bits & 0x7FFF) << 13 &+ 0x3800_0000)
  }

  /// F16 -> F64: exact; a NaN is quieted and keeps its payload.
  @inline(__always)
  public static func doubleBits(fromHalfBits bits: UInt16) -> UInt64 {
    if bits & 0x7C00 == 0x7C00 && bits & 0x03FF != 0 {
      return UInt64(bits & 0x8000) << 48 | 0x7FF8_0000_0000_0000 | UInt64(bits & 0x03FF) << 42
    }
    return Double(Float(bitPattern: floatBits(fromHalfBits: bits))).bitPattern
  }

  /// F16 -> BF16 (through the exact F32 value); NaN -> 0x7FC0 as torch's scalar kernel gives.
  @inline(__always)
  public static func bfloat16Bits(fromHalfBits bits: UInt16) -> UInt16 {
    if bits & 0x7C00 == 0x7C00 && bits & 0x03FF != 0 { return 0x7FC0 }
    return bfloat16Bits(fromFloatBits: floatBits(fromHalfBits: bits))
  }
}
