import Testing

@testable import CheckpointFormats

/// The CRC-32 against a bit-at-a-time reference of the zip polynomial: every length around the folding's block
/// sizes, unaligned starts, and a stream fed in uneven pieces (the fast path folds whole 16-byte blocks of each
/// piece and leaves the tail to zlib).
struct CRC32Tests {
  /// Reflected CRC-32, polynomial 0xEDB88320, one bit at a time.
  static func reference(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc ^= UInt32(byte)
      for _ in 0..<8 { crc = (crc >> 1) ^ (crc & 1 == 1 ? 0xEDB8_8320 : 0) }
    }
    return ~crc
  }

  static func data(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return UInt8(truncatingIfNeeded: state >> 33)
    }
  }

  @Test func knownValues() {
    #expect(CRC32.checksum([]) == 0)
    #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    #expect(CRC32.checksum([UInt8](repeating: 0, count: 4096)) == 0xC71C_0011)
  }

  @Test func everyLengthAndOffsetMatchesTheReference() {
    let bytes = Self.data(600, seed: 7)
    for start in 0..<9 {
      for length in Array(0...300) + [511, 512, 513, 590] where start + length <= bytes.count {
        let slice = bytes[start..<(start + length)]
        #expect(CRC32.checksum(Array(slice)) == Self.reference(slice), "start \(start) length \(length)")
      }
    }
  }

  @Test func unevenPiecesGiveTheWholeChecksum() {
    let bytes = Self.data(1 << 20, seed: 11)
    let expected = Self.reference(bytes[...])
    for pieces in [[1, 63, 64, 65, 127, 1000], [4096, 17, 80, 3], [(1 << 20) - 5, 5]] {
      var crc = CRC32()
      var at = 0
      var turn = 0
      while at < bytes.count {
        let n = Swift.min(pieces[turn % pieces.count], bytes.count - at)
        bytes[at..<(at + n)].withUnsafeBytes { crc.update($0) }
        at += n
        turn += 1
      }
      #expect(crc.value == expected, "pieces \(pieces)")
    }
  }
}
