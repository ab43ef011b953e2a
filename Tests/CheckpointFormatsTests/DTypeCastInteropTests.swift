import Foundation
import Testing

@testable import CheckpointFormats

private let castScript = #"""
  import sys, torch
  d = sys.argv[1]
  names = ["float16", "bfloat16", "float32", "float64"]
  for src in names:
      raw = bytearray(open(f"{d}/in_{src}.bin", "rb").read())
      x = torch.frombuffer(raw, dtype=getattr(torch, src))
      for dst in names:
          if dst != src:
              y = x.to(getattr(torch, dst)).contiguous()
              open(f"{d}/out_{src}_{dst}.bin", "wb").write(y.view(torch.uint8).numpy().tobytes())
  print("OK")
  """#

/// Every cast compared bit for bit with real torch's `.to(dtype)` on CPU.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: venvPython)))
struct DTypeCastInteropTests {
  static let dtypes: [DType] = [.f16, .bf16, .f32, .f64]

  /// All 16-bit patterns, and random 32/64-bit patterns plus ordinary values.
  private func inputs(_ dtype: DType) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    switch dtype {
    case .f16, .bf16:
      return (0...0xFFFF).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
    case .f32:
      var values = (0..<200_000).map { _ in UInt32.random(in: .min ... .max, using: &generator) }
      values += (0..<100_000).map { _ in Float.random(in: -70_000...70_000, using: &generator).bitPattern }
      values += (0..<100_000).map { _ in Float.random(in: -1e-6...1e-6, using: &generator).bitPattern }
      return values.withUnsafeBytes { Array($0) }
    default:
      var values = (0..<200_000).map { _ in UInt64.random(in: .min ... .max, using: &generator) }
      values += (0..<100_000).map { _ in Double.random(in: -70_000...70_000, using: &generator).bitPattern }
      values += (0..<100_000).map { _ in Double.random(in: -1e-6...1e-6, using: &generator).bitPattern }
      return values.withUnsafeBytes { Array($0) }
    }
  }

  private func isNaN(_ bytes: ArraySlice<UInt8>, _ dtype: DType) -> Bool {
    var bits: UInt64 = 0
    for (index, byte) in bytes.enumerated() { bits |= UInt64(byte) << (8 * UInt64(index)) }
    switch dtype {
    case .f16: return bits & 0x7C00 == 0x7C00 && bits & 0x03FF != 0
    case .bf16: return bits & 0x7F80 == 0x7F80 && bits & 0x007F != 0
    case .f32: return Float(bitPattern: UInt32(bits)).isNaN
    default: return Double(bitPattern: bits).isNaN
    }
  }

  @Test func everyPairMatchesTorch() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var sources: [DType: [UInt8]] = [:]
    for dtype in Self.dtypes {
      sources[dtype] = inputs(dtype)
      try Data(sources[dtype] ?? []).write(to: URL(fileURLWithPath: "\(dir)/in_\(dtype.torchName).bin"))
    }
    let (output, status) = try runPython(castScript, arguments: [dir])
    #expect(status == 0 && output == "OK", "\(output)")
    for from in Self.dtypes {
      for to in Self.dtypes where to != from {
        let input = sources[from] ?? []
        let expected = [UInt8](
          try Data(contentsOf: URL(fileURLWithPath: "\(dir)/out_\(from.torchName)_\(to.torchName).bin")))
        var ours = [UInt8](repeating: 0, count: input.count / from.byteSize * to.byteSize)
        try input.withUnsafeBytes { (raw) in
          try ours.withUnsafeMutableBytes { _ = try DTypeCast.convert(raw, from: from, to: to, into: $0) }
        }
        #expect(ours.count == expected.count)
        // torch's NaN bits for f16 -> f32 and f64 -> bf16 depend on its kernel path: NaN-ness must match.
        let nanPathDependent = (from == .f16 && to == .f32) || (from == .f64 && to == .bf16)
        var mismatches = 0
        var firstMismatch = ""
        for element in 0..<(ours.count / to.byteSize) {
          let range = (element * to.byteSize)..<((element + 1) * to.byteSize)
          if ours[range] == expected[range] { continue }
          if nanPathDependent && isNaN(ours[range], to) && isNaN(expected[range], to) { continue }
          mismatches += 1
          if firstMismatch.isEmpty {
            let inRange = (element * from.byteSize)..<((element + 1) * from.byteSize)
            firstMismatch = "input \(Array(input[inRange])) ours \(Array(ours[range])) torch \(Array(expected[range]))"
          }
        }
        #expect(mismatches == 0, "\(from.rawValue) -> \(to.rawValue): \(mismatches) differ, first: \(firstMismatch)")
      }
    }
  }
}
