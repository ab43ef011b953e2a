/// Little-endian field appenders for zip headers.
extension Array where Element == UInt8 {
  mutating func appendLE16(_ value: UInt16) {
    append(UInt8(truncatingIfNeeded: value))
    append(UInt8(truncatingIfNeeded: value >> 8))
  }

  mutating func appendLE32(_ value: UInt32) {
    for shift in stride(from: 0, to: 32, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
  }

  mutating func appendLE64(_ value: UInt64) {
    for shift in stride(from: 0, to: 64, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
  }

  /// Appends a 32-bit field, clamped to 0xFFFFFFFF (the zip64 "see the extra field" marker).
  mutating func appendClamped32(_ value: Int64) {
    appendLE32(UInt32(Swift.min(value, ZipLayout.zip64Threshold)))
  }
}
