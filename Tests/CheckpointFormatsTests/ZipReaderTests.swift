import Foundation
import Testing

@testable import CheckpointFormats

@Suite struct ZipReaderTests {
  static let entries: [ZipFixture.Entry] = [
    .init(name: "top/data.pkl", data: [1, 2, 3]),
    .init(name: "top/data/0", data: Array(0..<100)),
    .init(name: "top/version", data: Array("3\n".utf8)),
  ]

  func open(_ fixture: ZipFixture) throws -> ZipReader {
    let folder = try FixtureFolder()
    let path = try folder.write("a.bin", fixture.bytes)
    return try withExtendedLifetime(folder) { try ZipReader(file: try ReadableFile(path: path)) }
  }

  func expectError(_ code: CheckpointError.Code, _ text: String, _ fixture: ZipFixture) throws {
    do {
      _ = try open(fixture)
      Issue.record("expected \(code) containing '\(text)'")
    } catch let error as CheckpointError {
      #expect(error.code == code, "\(error)")
      #expect(error.message.contains(text), "\(error)")
    }
  }

  @Test(arguments: [true, false]) func readsStoredEntries(zip64: Bool) throws {
    let fixture = ZipFixture(Self.entries, zip64: zip64)
    let zip = try open(fixture)
    #expect(zip.prefix == "top")
    #expect(zip.recordNames == ["data.pkl", "data/0", "version"])
    let record = try #require(zip.entry("data/0"))
    #expect(record.size == 100)
    #expect(record.dataOffset == Int64(fixture.localOffsets[1] + 30 + "top/data/0".utf8.count))
    #expect(try zip.file.readBytes(at: record.dataOffset, count: 100) == Array(0..<100))
    try StreamBuffer.with(size: 7) { scratch in try zip.verifyAllCRCs(scratch: scratch) }
  }

  @Test func crcCheckFindsCorruption() throws {
    var fixture = ZipFixture(Self.entries)
    fixture.bytes[fixture.localOffsets[1] + 30 + 10 + 5] ^= 0xFF
    let zip = try open(fixture)
    let record = try #require(zip.entry("data/0"))
    #expect(throws: CheckpointError.self) {
      try StreamBuffer.with(size: 64) { scratch in try zip.verifyCRC(record, scratch: scratch) }
    }
  }

  @Test func refusesCompressedEntry() throws {
    var fixture = ZipFixture(Self.entries)
    fixture.patch(fixture.centralOffsets[1] + 10, 8, 2)
    try expectError(.unsupported, "compressed", fixture)
  }

  @Test func refusesEncryptedEntry() throws {
    var fixture = ZipFixture(Self.entries)
    fixture.patch(fixture.centralOffsets[0] + 8, 0x0801, 2)
    try expectError(.unsupported, "encrypted", fixture)
  }

  @Test func refusesDuplicateNames() throws {
    let fixture = ZipFixture(Self.entries + [.init(name: "top/data/0", data: [9])])
    try expectError(.invalidFormat, "duplicate", fixture)
  }

  @Test func refusesEntryOutsideTopFolder() throws {
    let fixture = ZipFixture(Self.entries + [.init(name: "other/evil", data: [9])])
    try expectError(.invalidFormat, "outside the top folder", fixture)
  }

  @Test func refusesArchiveWithoutTopFolder() throws {
    let fixture = ZipFixture([.init(name: "data.pkl", data: [1])])
    try expectError(.invalidFormat, "not in a subdirectory", fixture)
  }

  @Test func refusesLocalCentralSizeMismatch() throws {
    var fixture = ZipFixture(Self.entries)
    fixture.patch(fixture.localOffsets[1] + 22, 99, 4)
    try expectError(.invalidFormat, "disagrees", fixture)
  }

  @Test func refusesRecordPastEndOfFile() throws {
    var fixture = ZipFixture(Self.entries)
    fixture.patch(fixture.centralOffsets[1] + 20, 1_000_000, 4)
    fixture.patch(fixture.centralOffsets[1] + 24, 1_000_000, 4)
    fixture.patch(fixture.localOffsets[1] + 18, 1_000_000, 4)
    fixture.patch(fixture.localOffsets[1] + 22, 1_000_000, 4)
    try expectError(.truncated, "runs past", fixture)
  }

  @Test func refusesLocalHeaderPastData() throws {
    var fixture = ZipFixture(Self.entries)
    fixture.patch(fixture.centralOffsets[2] + 42, 0x7FFF_0000, 4)
    try expectError(.truncated, "past the data", fixture)
  }

  @Test func refusesLyingZip64DirectoryOffset() throws {
    var fixture = ZipFixture(Self.entries)
    let zip64 = try #require(fixture.zip64EndOffset)
    fixture.patch(zip64 + 48, UInt64(fixture.centralDirectoryOffset + 46), 8)
    try expectError(.invalidFormat, "disagrees", fixture)
  }

  @Test func refusesZip64PointingPastTheEnd() throws {
    var fixture = ZipFixture(Self.entries)
    // Saturate the classic fields so the zip64 values are used, then make them lie.
    fixture.patch(fixture.endOffset + 16, 0xFFFF_FFFF, 4)
    let zip64 = try #require(fixture.zip64EndOffset)
    fixture.patch(zip64 + 48, UInt64(1) << 40, 8)
    try expectError(.truncated, "past its end records", fixture)
  }

  @Test func refusesZip64LocatorPointingAtItself() throws {
    var fixture = ZipFixture(Self.entries)
    let locator = fixture.endOffset - 20
    fixture.patch(locator + 8, UInt64(locator), 8)
    try expectError(.invalidFormat, "zip64 locator", fixture)
  }

  @Test func refusesSaturatedSizeWithoutZip64Extra() throws {
    var fixture = ZipFixture(Self.entries)
    fixture.patch(fixture.centralOffsets[0] + 24, 0xFFFF_FFFF, 4)
    try expectError(.invalidFormat, "no zip64 extra", fixture)
  }

  @Test func refusesAbsurdEntryCount() throws {
    var fixture = ZipFixture(Self.entries)
    fixture.patch(fixture.endOffset + 8, 0xFFFE, 2)
    fixture.patch(fixture.endOffset + 10, 0xFFFE, 2)
    let zip64 = try #require(fixture.zip64EndOffset)
    fixture.patch(zip64 + 24, 0xFFFE, 8)
    fixture.patch(zip64 + 32, 0xFFFE, 8)
    try expectError(.limitExceeded, "absurd", fixture)
  }

  @Test func refusesCutShortArchive() throws {
    var fixture = ZipFixture(Self.entries)
    fixture.bytes.removeLast(30)
    try expectError(.truncated, "central directory", fixture)
  }
}
