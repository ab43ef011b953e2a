import Foundation
import Testing

@testable import CheckpointFormats

/// The reference accepts headers up to 100,000,000 bytes; ckptd must parse one in bounded memory (no
/// generic JSON tree, no Foundation JSONSerialization) and in reasonable time.
@Suite(.serialized) struct SafetensorsLargeHeaderTests {
  /// A header of exactly `maxHeaderSize` bytes: one tensor and a metadata value filling the rest.
  @Test func headerOfExactlyOneHundredMillionBytesWithAHugeMetadataValue() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let head = Array(#"{"__metadata__":{"format":"pt","big":""#.utf8)
    let tail = Array(#""},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.utf8)
    let fill = SafetensorsReader.maxHeaderSize - head.count - tail.count
    // Built with one memset and two small copies: a byte-by-byte loop is slow in a debug build.
    let data: [UInt8] = [0, 0, 128, 63, 0, 0, 0, 64]
    var file = [UInt8](repeating: 0x61, count: 8 + SafetensorsReader.maxHeaderSize + data.count)
    let prefix = (0..<8).map { UInt8(truncatingIfNeeded: SafetensorsReader.maxHeaderSize >> (8 * $0)) }
    file.replaceSubrange(0..<8, with: prefix)
    file.replaceSubrange(8..<(8 + head.count), with: head)
    let tailStart = 8 + SafetensorsReader.maxHeaderSize - tail.count
    file.replaceSubrange(tailStart..<(tailStart + tail.count), with: tail)
    file.replaceSubrange((file.count - data.count)..<file.count, with: data)
    let path = try SafetensorsFixture.writeFile(file, in: directory)
    file = []
    let start = Date()
    let dict = try SafetensorsReader.read(path: path)
    let elapsed = Date().timeIntervalSince(start)
    #expect(dict.metadata["big"]?.utf8.count == fill)
    #expect(dict.tensors.map(\.name) == ["w"])
    #expect(elapsed < 30, "parsing took \(elapsed) s")
    print("100 MB header parsed in \(elapsed) s")
  }

  /// Many small entries are the costly case for the descriptors; about 20 MB of header (350,000
  /// tensors) keeps the debug-build test quick while exercising the same code as a 100 MB one.
  @Test func twentyMegabyteHeaderOfManyTensors() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let count = 350_000
    var header = Array(#"{"__metadata__":{"format":"pt"}"#.utf8)
    header.reserveCapacity(count * 60)
    for index in 0..<count {
      header.append(
        contentsOf: #","layer.\#(index).w":{"dtype":"U8","shape":[1],"data_offsets":[\#(index),\#(index + 1)]}"#.utf8)
    }
    header.append(0x7D)
    let data = [UInt8](repeating: 7, count: count)
    let path = try SafetensorsFixture.writeFile(SafetensorsFixture.file(header: header, data: data), in: directory)
    #expect(header.count > 20_000_000)
    let start = Date()
    let dict = try SafetensorsReader.read(path: path)
    let elapsed = Date().timeIntervalSince(start)
    #expect(dict.tensors.count == count)
    #expect(dict.tensors.last?.name == "layer.\(count - 1).w")
    #expect(dict.storages["layer.12345.w"]?.fileOffset == Int64(8 + header.count + 12345))
    #expect(elapsed < 30, "parsing took \(elapsed) s")
  }
}
