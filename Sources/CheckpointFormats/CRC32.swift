import CZlib

/// A running CRC-32 (the zip / zlib polynomial), fed chunk by chunk as data streams past.
public struct CRC32: Sendable, Hashable {
  /// The CRC of everything fed so far (0 for no data).
  public private(set) var value: UInt32 = 0

  public init() {}

  /// Folds `bytes` into the checksum. The corresponding C function is zlib's `crc32`; the bulk goes through
  /// `ckptd_crc32`'s carry-less-multiply folding where the CPU has PCLMULQDQ (several times faster).
  public mutating func update(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress else { return }
    var crc = UInt(value)
    var done = 0
    // zlib takes a 32-bit length: feed at most 1 GiB per call.
    while done < bytes.count {
      let n = Swift.min(bytes.count - done, 1 << 30)
      crc = ckptd_crc32(crc, (base + done).assumingMemoryBound(to: UInt8.self), n)
      done += n
    }
    value = UInt32(truncatingIfNeeded: crc)
  }

  /// Folds an array of bytes into the checksum.
  public mutating func update(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { update($0) }
  }

  /// The CRC-32 of `bytes`.
  public static func checksum(_ bytes: [UInt8]) -> UInt32 {
    var crc = CRC32()
    crc.update(bytes)
    return crc.value
  }
}
