import Foundation
import Testing

@testable import CheckpointFormats

/// A zip parser written for the tests, independent of the writer, over a small archive in memory.
struct TestZip {
  struct Entry {
    var name: String
    var flags: UInt16
    var crc: UInt32
    var size: Int64
    var headerOffset: Int64
    var dataOffset: Int64
    var localCRC: UInt32
    var localSizes: (UInt32, UInt32)
  }

  let bytes: [UInt8]
  var entries: [Entry] = []
  var zip64EndOffset: Int64 = 0
  var directoryOffset: Int64 = 0
  var directorySize: Int64 = 0

  func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
  func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
  func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }

  init(path: String) throws {
    bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    let eocd = bytes.count - 22
    #expect(u32(eocd) == 0x0605_4B50)
    let locator = eocd - 20
    #expect(u32(locator) == 0x0706_4B50)
    #expect(u32(locator + 16) == 1)
    zip64EndOffset = Int64(u64(locator + 8))
    let end64 = Int(zip64EndOffset)
    #expect(end64 == locator - 56)
    #expect(u32(end64) == 0x0606_4B50)
    #expect(u64(end64 + 4) == 44)
    #expect(u16(end64 + 12) == 0x031E)
    #expect(u16(end64 + 14) == 0x002D)
    let count = Int(u64(end64 + 32))
    #expect(u64(end64 + 24) == UInt64(count))
    directorySize = Int64(u64(end64 + 40))
    directoryOffset = Int64(u64(end64 + 48))
    #expect(Int(u16(eocd + 8)) == min(count, 0xFFFF))
    #expect(Int64(u32(eocd + 12)) == min(directorySize, 0xFFFF_FFFF))
    #expect(Int64(u32(eocd + 16)) == min(directoryOffset, 0xFFFF_FFFF))
    #expect(directoryOffset + directorySize == zip64EndOffset)
    var at = Int(directoryOffset)
    for _ in 0..<count {
      #expect(u32(at) == 0x0201_4B50)
      let nameLength = Int(u16(at + 28))
      let extraLength = Int(u16(at + 30))
      let name = String(decoding: bytes[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self)
      let headerOffset = Int(u32(at + 42))
      #expect(u16(at + 10) == 0)  // stored
      #expect(extraLength == 0)  // small archives need no zip64 extra
      let local = headerOffset
      #expect(u32(local) == 0x0403_4B50)
      let localName = Int(u16(local + 26))
      let localExtra = Int(u16(local + 28))
      entries.append(
        Entry(
          name: name, flags: u16(at + 8), crc: u32(at + 16), size: Int64(u32(at + 24)),
          headerOffset: Int64(headerOffset), dataOffset: Int64(local + 30 + localName + localExtra),
          localCRC: u32(local + 14), localSizes: (u32(local + 18), u32(local + 22))))
      at += 46 + nameLength + extraLength
    }
  }

  func data(_ entry: Entry) -> [UInt8] {
    Array(bytes[Int(entry.dataOffset)..<Int(entry.dataOffset + entry.size)])
  }
}

/// Bitwise CRC-32 (reflected 0xEDB88320), independent of zlib.
func referenceCRC32(_ bytes: [UInt8]) -> UInt32 {
  var crc: UInt32 = 0xFFFF_FFFF
  for byte in bytes {
    crc ^= UInt32(byte)
    for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
  }
  return ~crc
}

func temporaryDirectory() throws -> String {
  let path = NSTemporaryDirectory() + "ckptd-tw-" + UUID().uuidString
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

@Suite struct ZipWriterTests {
  @Test func layoutOfRecordsMatchesMiniz() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/x.zip"
    let output = try OutputFile(path: path)
    let writer = try ZipWriter(output: output, archiveName: "x")
    let payloads: [(String, [UInt8])] = [
      ("data.pkl", Array(0..<200).map { UInt8($0) }), ("empty", []), ("data/0", [1, 2, 3]),
      ("long/" + String(repeating: "n", count: 70), Array(repeating: 7, count: 100_000)),
    ]
    try StreamBuffer.with(size: 4096) { (scratch) in
      for (name, bytes) in payloads {
        try writer.addRecord(name, source: BytesSource(bytes), scratch: scratch)
      }
    }
    try writer.finish()
    try output.commit()
    let parsed = try TestZip(path: path)
    #expect(parsed.entries.map(\.name) == payloads.map { "x/" + $0.0 })
    for (entry, (_, bytes)) in zip(parsed.entries, payloads) {
      #expect(entry.dataOffset % 64 == 0)
      #expect(entry.size == Int64(bytes.count))
      #expect(entry.crc == referenceCRC32(bytes))
      #expect(parsed.data(entry) == bytes)
      #expect(entry.localCRC == 0 && entry.localSizes == (0, 0))
      #expect(entry.flags == (bytes.isEmpty ? 0x0800 : 0x0808))
      // FB padding extra, then 'Z' filler.
      let extraStart = Int(entry.headerOffset) + 30 + Array(entry.name.utf8).count
      #expect(parsed.bytes[extraStart] == 0x46 && parsed.bytes[extraStart + 1] == 0x42)
      let padding = Int(parsed.u16(extraStart + 2))
      #expect(extraStart + 4 + padding == Int(entry.dataOffset))
      #expect(parsed.bytes[(extraStart + 4)..<(extraStart + 4 + padding)].allSatisfy { $0 == 0x5A })
      // The data descriptor follows non-empty data; the next header follows it.
      let end = Int(entry.dataOffset + entry.size)
      if bytes.isEmpty {
        #expect(parsed.u32(end) == 0x0403_4B50 || parsed.u32(end) == 0x0201_4B50)
      } else {
        #expect(parsed.u32(end) == 0x0807_4B50)
        #expect(parsed.u32(end + 4) == entry.crc)
        #expect(Int64(parsed.u32(end + 8)) == entry.size && Int64(parsed.u32(end + 12)) == entry.size)
      }
    }
  }

  @Test func sourceProducingTheWrongCountIsRefused() throws {
    struct Liar: TensorSource {
      var byteCount: Int64 { 10 }
      func stream(scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try [UInt8](repeating: 1, count: 4).withUnsafeBytes { try body($0) }
      }
    }
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let output = try OutputFile(path: dir + "/y.zip")
    let zip = try ZipWriter(output: output, archiveName: "y")
    #expect(throws: CheckpointError.self) {
      try StreamBuffer.with(size: 64) { try zip.addRecord("data/0", source: Liar(), scratch: $0) }
    }
  }

  @Test(arguments: ["", "a/b"])
  func badArchiveNamesAreRefused(name: String) throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let output = try OutputFile(path: dir + "/z.zip")
    #expect(throws: CheckpointError.self) { try ZipWriter(output: output, archiveName: name) }
  }

  /// The getOffset/getPadding formula, including the zip64 branches that real files reach only past 4 GiB.
  @Test(
    arguments: [
      (Int64(0), 12, Int64(621), 0, 18, Int64(64), 16),  // data.pkl of the reference file
      (Int64(1620), 10, Int64(0), 0, 0, Int64(1664), 0),  // an empty record: no padding, no descriptor
      (Int64(0xFFFF_FFFF), 20, Int64(10), 12, 63, Int64(0xFFFF_FFFF) + 129, 24),
      (Int64(100), 20, Int64(0xFFFF_FFFF), 20, 18, Int64(192), 24),
      (Int64(0x1_0000_0000), 20, Int64(0x1_0000_0000), 28, 46, Int64(0x1_0000_0000) + 128, 24),
      (Int64(0xFFFF_FFFE), 20, Int64(0xFFFF_FFFE), 0, 12, Int64(0xFFFF_FFFE) + 66, 16),
    ] as [(Int64, Int, Int64, Int, Int, Int64, Int)])
  func offsetFormula(
    cursor: Int64, nameLength: Int, size: Int64, zip64: Int, padding: Int, dataOffset: Int64, descriptor: Int
  ) {
    let layout = ZipLayout.record(at: cursor, nameLength: nameLength, size: size)
    #expect(layout.localZip64ExtraLength == zip64)
    #expect(layout.paddingLength == padding)
    #expect(layout.dataOffset == dataOffset)
    #expect(layout.dataOffset % 64 == 0)
    #expect(layout.descriptorLength == descriptor)
    #expect(cursor + 30 + Int64(nameLength) + Int64(layout.localExtraLength) == layout.dataOffset)
    #expect(layout.endOffset == dataOffset + size + Int64(descriptor))
  }

  @Test func zip64HeadersCarryTheLargeValues() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let output = try OutputFile(path: dir + "/w.zip")
    let zip = try ZipWriter(output: output, archiveName: "w")
    let layout = ZipLayout.record(at: 0x1_2345_6789, nameLength: 8, size: 0x2_0000_0001)
    let local = zip.localHeader(layout: layout, name: Array("w/data/0".utf8))
    let parsed = TestBytes(local)
    #expect(parsed.u16(28) == UInt16(layout.localExtraLength))
    #expect(parsed.u16(38) == 0x0001 && parsed.u16(40) == 24)
    #expect(parsed.u64(42) == 0x2_0000_0001 && parsed.u64(50) == 0 && parsed.u64(58) == 0x1_2345_6789)
    #expect(parsed.u16(66) == 0x4246)  // "FB"
    #expect(Int64(local.count) + layout.headerOffset == layout.dataOffset)
    let central = TestBytes(ZipWriter.centralHeader(.init(name: "w/data/0", layout: layout, crc32: 0xABCD)))
    #expect(central.u32(20) == 0xFFFF_FFFF && central.u32(24) == 0xFFFF_FFFF && central.u32(42) == 0xFFFF_FFFF)
    #expect(central.u16(30) == 28)
    #expect(central.u16(54) == 0x0001 && central.u16(56) == 24)
    #expect(central.u64(58) == 0x2_0000_0001 && central.u64(66) == 0x2_0000_0001 && central.u64(74) == 0x1_2345_6789)
    let end = TestBytes(
      ZipWriter.endRecords(
        count: 70_000, directoryOffset: 0x1_0000_0000, directorySize: 5, zip64EndOffset: 0x1_0000_0005))
    #expect(end.u64(32) == 70_000 && end.u64(48) == 0x1_0000_0000 && end.u64(56 + 8) == 0x1_0000_0005)
    #expect(end.u16(76 + 8) == 0xFFFF && end.u32(76 + 16) == 0xFFFF_FFFF)
    output.abandon()
  }
}

struct TestBytes {
  let bytes: [UInt8]
  init(_ bytes: [UInt8]) { self.bytes = bytes }
  func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
  func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
  func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
}
