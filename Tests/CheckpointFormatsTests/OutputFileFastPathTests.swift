import Foundation
import Testing

@testable import CheckpointFormats

/// The kernel copy and the background SHA-256 must give exactly the bytes and digest the plain path gives.
@Suite struct OutputFileFastPathTests {
  static func temporaryFolder() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("outfast-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
  }

  static func pattern(_ count: Int, seed: UInt32) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
      state = state &* 1_103_515_245 &+ 12_345
      return UInt8(truncatingIfNeeded: state >> 16)
    }
  }

  @Test(arguments: [0, 1, 4095, 1 << 20, (40 << 20) + 3])
  func backgroundDigestMatchesInline(count: Int) throws {
    let dir = try Self.temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let bytes = Self.pattern(count, seed: UInt32(count))
    let output = try OutputFile(path: dir + "/out.bin", sha256: true)
    // Several appends of different sizes, as writers do.
    var start = 0
    for size in [7, 1 << 16, 3 << 20] where start < bytes.count {
      let end = Swift.min(bytes.count, start + size)
      try output.write(Array(bytes[start..<end]))
      start = end
    }
    if start < bytes.count { try output.write(Array(bytes[start...])) }
    var inline = StreamingSHA256()
    bytes.withUnsafeBytes { inline.update($0) }
    #expect(output.sha256Hex() == inline.hexDigest())
    try output.commit()
    #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/out.bin")) == Data(bytes))
  }

  @Test(arguments: [false, true])
  func kernelCopyInterleavesWithWrites(hashed: Bool) throws {
    let dir = try Self.temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let source = Self.pattern((20 << 20) + 11, seed: 7)
    #expect(FileManager.default.createFile(atPath: dir + "/src.bin", contents: Data(source)))
    let file = try ReadableFile(path: dir + "/src.bin")
    let output = try OutputFile(path: dir + "/out.bin", sha256: hashed)
    var expected: [UInt8] = Array("head".utf8)
    try output.write(Array("head".utf8))
    var progressed = 0
    try StreamBuffer.with(size: 4096) { scratch in
      try output.copy(from: file, offset: 5, count: Int64(source.count - 9), scratch: scratch) { progressed += $0 }
    }
    expected += source[5..<(source.count - 4)]
    try output.write(Array("tail".utf8))
    expected += Array("tail".utf8)
    #expect(progressed == source.count - 9)
    #expect(output.position == Int64(expected.count))
    if hashed {
      var inline = StreamingSHA256()
      expected.withUnsafeBytes { inline.update($0) }
      #expect(output.sha256Hex() == inline.hexDigest())
    }
    try output.commit()
    #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/out.bin")) == Data(expected))
  }

  @Test func copyPastTheEndIsTruncated() throws {
    let dir = try Self.temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(FileManager.default.createFile(atPath: dir + "/src.bin", contents: Data(Self.pattern(100, seed: 1))))
    let file = try ReadableFile(path: dir + "/src.bin")
    let output = try OutputFile(path: dir + "/out.bin")
    #expect(throws: CheckpointError.self) {
      try StreamBuffer.with(size: 64) { scratch in
        try output.copy(from: file, offset: 50, count: 80, scratch: scratch) { _ in }
      }
    }
    output.abandon()
  }
}
