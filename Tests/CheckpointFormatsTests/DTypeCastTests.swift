import Testing

@testable import CheckpointFormats

/// An independent model of IEEE binary formats, by Double arithmetic (no bit tricks shared with the
/// implementation): decode bits to a Double, and round a Double to the nearest representable value.
struct FloatFormat: Sendable, CustomStringConvertible {
  let name: String
  let exponentBits: Int
  let mantissaBits: Int
  var description: String { name }

  static let f16 = FloatFormat(name: "f16", exponentBits: 5, mantissaBits: 10)
  static let bf16 = FloatFormat(name: "bf16", exponentBits: 8, mantissaBits: 7)
  static let f32 = FloatFormat(name: "f32", exponentBits: 8, mantissaBits: 23)

  var bias: Int { (1 << (exponentBits - 1)) - 1 }
  var minExponent: Int { 1 - bias }
  var maxExponent: Int { bias }
  var signBit: UInt64 { 1 << UInt64(exponentBits + mantissaBits) }
  var infinityBits: UInt64 { UInt64((1 << exponentBits) - 1) << UInt64(mantissaBits) }

  func isNaN(_ bits: UInt64) -> Bool { bits & ~signBit > infinityBits }

  func decode(_ bits: UInt64) -> Double {
    let negative = bits & signBit != 0
    let exponent = Int((bits >> UInt64(mantissaBits)) & UInt64((1 << exponentBits) - 1))
    let mantissa = Double(bits & UInt64((1 << mantissaBits) - 1))
    var value: Double
    if exponent == (1 << exponentBits) - 1 {
      value = mantissa == 0 ? .infinity : .nan
    } else if exponent == 0 {
      value = mantissa * pow2(minExponent - mantissaBits)
    } else {
      value = (1 + mantissa * pow2(-mantissaBits)) * pow2(exponent - bias)
    }
    if negative { value = -value }
    return value
  }

  /// Round to nearest, ties to even, overflow to infinity; `x` must not be NaN.
  func encode(_ x: Double) -> UInt64 {
    let sign: UInt64 = x.sign == .minus ? signBit : 0
    let a = abs(x)
    if a == 0 { return sign }
    if a.isInfinite { return sign | infinityBits }
    let e = max(Int(a.exponent), minExponent)
    let ulp = pow2(e - mantissaBits)
    let rounded = (a / ulp).rounded(.toNearestOrEven) * ulp
    if rounded >= pow2(maxExponent + 1) { return sign | infinityBits }
    if rounded < pow2(minExponent) {
      return sign | UInt64(rounded / pow2(minExponent - mantissaBits))
    }
    let exponent = Int(rounded.exponent)
    let mantissa = UInt64((rounded / pow2(exponent) - 1) * pow2(mantissaBits))
    return sign | UInt64(exponent + bias) << UInt64(mantissaBits) | mantissa
  }

  private func pow2(_ n: Int) -> Double { Double(sign: .plus, exponent: n, significand: 1) }
}

/// A source that hands out its bytes in chunks of a fixed odd size, splitting elements.
struct ChoppySource: TensorSource {
  let bytes: [UInt8]
  let chunk: Int
  var byteCount: Int64 { Int64(bytes.count) }
  func stream(scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
    try bytes.withUnsafeBytes { (raw) in
      var start = 0
      while start < raw.count {
        let end = min(raw.count, start + chunk)
        try body(UnsafeRawBufferPointer(rebasing: raw[start..<end]))
        start = end
      }
    }
  }
}

@Suite struct DTypeCastTests {
  private func cast<In: FixedWidthInteger, Out: FixedWidthInteger>(
    _ values: [In], _ from: DType, _ to: DType, as: Out.Type
  ) throws -> [Out] {
    var output = [Out](repeating: 0, count: values.count)
    try values.withUnsafeBytes { (input) in
      try output.withUnsafeMutableBytes { (out) in
        _ = try DTypeCast.convert(input, from: from, to: to, into: out)
      }
    }
    return output
  }

  @Test func everyHalfPatternRoundTripsThroughFloat() throws {
    let all = (0...0xFFFF).map { UInt16($0) }
    let floats = try cast(all, .f16, .f32, as: UInt32.self)
    let back = try cast(floats, .f32, .f16, as: UInt16.self)
    let doubles = try cast(all, .f16, .f64, as: UInt64.self)
    for (index, bits) in all.enumerated() {
      let expected = FloatFormat.f16.decode(UInt64(bits))
      if expected.isNaN {
        #expect(Float(bitPattern: floats[index]).isNaN && Double(bitPattern: doubles[index]).isNaN)
        #expect(back[index] == bits | 0x0200, "NaN \(bits) comes back quieted with its payload")
      } else {
        #expect(Double(Float(bitPattern: floats[index])) == expected)
        #expect(Float(bitPattern: floats[index]).sign == (bits & 0x8000 != 0 ? .minus : .plus))
        #expect(doubles[index] == expected.bitPattern)
        #expect(back[index] == bits)
      }
    }
  }

  @Test func everyBFloat16PatternRoundTripsThroughFloat() throws {
    let all = (0...0xFFFF).map { UInt16($0) }
    let floats = try cast(all, .bf16, .f32, as: UInt32.self)
    let back = try cast(floats, .f32, .bf16, as: UInt16.self)
    for (index, bits) in all.enumerated() {
      let expected = FloatFormat.bf16.decode(UInt64(bits))
      if expected.isNaN {
        #expect(floats[index] == UInt32(bits) << 16)  // exact, as torch
        #expect(back[index] == 0xFFFF)  // torch's f32 -> bf16 NaN
      } else {
        #expect(Double(Float(bitPattern: floats[index])) == expected)
        #expect(back[index] == bits)
      }
    }
  }

  /// Special values and their torch 2.15 results (checked by hand with `.to(dtype)` on CPU).
  @Test(
    arguments: [
      // (f32 bits, f16 bits, bf16 bits)
      (UInt32(0x7FC0_0000), UInt16(0x7E00), UInt16(0xFFFF)),
      (0xFFC0_0000, 0xFE00, 0xFFFF),
      (0x7F80_0001, 0x7E00, 0xFFFF),
      (0x7FA1_2345, 0x7F09, 0xFFFF),
      (0xFFBF_FFFF, 0xFFFF, 0xFFFF),
      (0x7F80_0000, 0x7C00, 0x7F80),
      (0xFF80_0000, 0xFC00, 0xFF80),
      (0x8000_0000, 0x8000, 0x8000),
      (0x0000_0001, 0x0000, 0x0000),
      (0x7F7F_FFFF, 0x7C00, 0x7F80),
      (0x477F_F000, 0x7C00, 0x4780),
      (0x477F_EFFF, 0x7BFF, 0x4780),
      (0x3F80_8000, 0x3C04, 0x3F80),
      (0x3F81_8000, 0x3C0C, 0x3F82),
      (0x3300_0000, 0x0000, 0x3300),
      (0x3300_0001, 0x0001, 0x3300),
    ] as [(UInt32, UInt16, UInt16)])
  func specialFloatValuesMatchTorch(float: UInt32, half: UInt16, bfloat: UInt16) throws {
    #expect(try cast([float], .f32, .f16, as: UInt16.self) == [half])
    #expect(try cast([float], .f32, .bf16, as: UInt16.self) == [bfloat])
  }

  /// Double inputs: torch rounds through f32 first (two roundings), and NaNs as listed.
  @Test(
    arguments: [
      // (f64 bits, f32 bits, f16 bits, bf16 bits)
      (Double(1 + 0x1p-11 + 0x1p-40).bitPattern, UInt32(0x3F80_1000), UInt16(0x3C00), UInt16(0x3F80)),
      (Double(1 + 0x1p-8 + 0x1p-40).bitPattern, 0x3F80_8000, 0x3C04, 0x3F80),
      (Double(1e300).bitPattern, 0x7F80_0000, 0x7C00, 0x7F80),
      (Double(-1e300).bitPattern, 0xFF80_0000, 0xFC00, 0xFF80),
      (UInt64(1), 0x0000_0000, 0x0000, 0x0000),
      (Double(-0.0).bitPattern, 0x8000_0000, 0x8000, 0x8000),
      (0x7FF0_0000_0000_0001, 0x7FC0_0000, 0x7E00, 0xFFFF),
      (0xFFF8_1234_5678_9ABC, 0xFFC0_91A2, 0xFE04, 0xFFFF),
    ] as [(UInt64, UInt32, UInt16, UInt16)])
  func specialDoubleValuesMatchTorch(double: UInt64, float: UInt32, half: UInt16, bfloat: UInt16) throws {
    #expect(try cast([double], .f64, .f32, as: UInt32.self) == [float])
    #expect(try cast([double], .f64, .f16, as: UInt16.self) == [half])
    #expect(try cast([double], .f64, .bf16, as: UInt16.self) == [bfloat])
  }

  @Test(
    arguments: [
      (UInt16(0x7C01), UInt32(0x7FC0_2000), UInt64(0x7FF8_0400_0000_0000), UInt16(0x7FC0)),
      (0xFD55, 0xFFEA_A000, 0xFFFD_5400_0000_0000, 0x7FC0),
      (0x0001, 0x3380_0000, 0x3E70_0000_0000_0000, 0x3380),
    ] as [(UInt16, UInt32, UInt64, UInt16)])
  func halfWideningAndNaN(half: UInt16, float: UInt32, double: UInt64, bfloat: UInt16) throws {
    #expect(try cast([half], .f16, .f32, as: UInt32.self) == [float])
    #expect(try cast([half], .f16, .f64, as: UInt64.self) == [double])
    #expect(try cast([half], .f16, .bf16, as: UInt16.self) == [bfloat])
  }

  @Test(
    arguments: [
      (UInt16(0x7F81), UInt16(0x7E08), UInt64(0x7FF8_2000_0000_0000)),
      (0xFFC1, 0xFE08, 0xFFF8_2000_0000_0000),
      (0x0001, 0x0000, 0x37A0_0000_0000_0000),
      (0x7F80, 0x7C00, 0x7FF0_0000_0000_0000),
    ] as [(UInt16, UInt16, UInt64)])
  func bfloatToHalfAndDouble(bfloat: UInt16, half: UInt16, double: UInt64) throws {
    #expect(try cast([bfloat], .bf16, .f16, as: UInt16.self) == [half])
    #expect(try cast([bfloat], .bf16, .f64, as: UInt64.self) == [double])
  }

  @Test(arguments: [FloatFormat.f16, .bf16])
  func randomFloatPatternsRoundAsTheReference(format: FloatFormat) throws {
    var generator = SystemRandomNumberGenerator()
    // Random bits, plus values near the format's range where rounding is interesting.
    var inputs = (0..<100_000).map { _ in UInt32.random(in: .min ... .max, using: &generator) }
    inputs += (0..<100_000).map { _ in 0x3300_0000 &+ UInt32.random(in: 0...0x1500_0000, using: &generator) }
    let target: DType = format.name == "f16" ? .f16 : .bf16
    let output = try cast(inputs, .f32, target, as: UInt16.self)
    for (bits, result) in zip(inputs, output) {
      let value = Double(Float(bitPattern: bits))
      if value.isNaN { continue }
      #expect(UInt64(result) == format.encode(value), "f32 \(String(bits, radix: 16)) -> \(format)")
    }
  }

  @Test func randomDoublePatternsRoundAsTheReference() throws {
    var generator = SystemRandomNumberGenerator()
    var inputs = (0..<100_000).map { _ in UInt64.random(in: .min ... .max, using: &generator) }
    inputs += (0..<100_000).map { _ in Double.random(in: -70_000...70_000, using: &generator).bitPattern }
    inputs += (0..<50_000).map { _ in Double.random(in: -1e-38...1e-38, using: &generator).bitPattern }
    let floats = try cast(inputs, .f64, .f32, as: UInt32.self)
    let halves = try cast(inputs, .f64, .f16, as: UInt16.self)
    for (index, bits) in inputs.enumerated() {
      let value = Double(bitPattern: bits)
      if value.isNaN { continue }
      let f32 = FloatFormat.f32.encode(value)
      #expect(UInt64(floats[index]) == f32)
      #expect(UInt64(halves[index]) == FloatFormat.f16.encode(FloatFormat.f32.decode(f32)))
    }
  }

  @Test(arguments: [1, 3, 5, 7, 4096])
  func castSourceHandlesSplitElements(chunk: Int) throws {
    let values: [Float] = (0..<1000).map { Float($0) * 0.37 - 100 } + [.nan, .infinity, -0.0]
    let bytes = values.withUnsafeBytes { Array($0) }
    for target in [DType.f16, .bf16, .f64] {
      let source = try CastSource(inner: ChoppySource(bytes: bytes, chunk: chunk), from: .f32, to: target)
      #expect(source.byteCount == Int64(values.count * target.byteSize))
      var streamed: [UInt8] = []
      try StreamBuffer.with(size: 64) { (scratch) in
        try source.stream(scratch: scratch) { streamed += $0 }
      }
      var direct = [UInt8](repeating: 0, count: values.count * target.byteSize)
      try bytes.withUnsafeBytes { (input) in
        try direct.withUnsafeMutableBytes { _ = try DTypeCast.convert(input, from: .f32, to: target, into: $0) }
      }
      #expect(streamed == direct)
    }
  }

  @Test func castSourceRefusesNonFloatPairs() {
    #expect(throws: CheckpointError.self) {
      try CastSource(inner: BytesSource([1, 2, 3, 4]), from: .i32, to: .f32)
    }
    #expect(throws: CheckpointError.self) {
      try CastSource(inner: BytesSource([1, 2, 3]), from: .f16, to: .f32)
    }
  }
}
