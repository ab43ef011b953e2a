import Foundation
import Testing

@testable import CheckpointFormats

/// Non-contiguous views gathered in memory, in transposed bands and run by run must all give the C-order
/// bytes a naive element-by-element walk gives, whatever the scratch size (small scratches force the band
/// and run paths, large ones the one-read path).
@Suite struct StridedGatherTests {
  struct View: Sendable, CustomStringConvertible {
    var shape: [Int]
    var strides: [Int]
    var offset: Int
    var description: String { "\(shape)/\(strides)+\(offset)" }
  }

  static let views: [View] = [
    View(shape: [16, 24], strides: [1, 16], offset: 0),  // transposed matrix
    View(shape: [16, 24], strides: [1, 16], offset: 5),  // transposed with an offset
    View(shape: [3, 4, 5], strides: [1, 3, 12], offset: 0),  // fully reversed permutation
    View(shape: [4, 5, 3], strides: [15, 1, 5], offset: 2),  // inner permutation
    View(shape: [64], strides: [0], offset: 7),  // expanded scalar
    View(shape: [6, 32], strides: [0, 1], offset: 0),  // expanded row
    View(shape: [10, 1, 8], strides: [20, 99, 2], offset: 1),  // every other element, size-1 dim
    View(shape: [12, 7], strides: [1, 12], offset: 3),
  ]

  static let scratchSizes = [4, 12, 64, 256, 4096, 1 << 16]

  static func withStorage<T>(elements: Int, _ body: (ReadableFile) throws -> T) throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("gather-\(UUID().uuidString).bin").path
    defer { unlink(path) }
    var bytes = [UInt8](repeating: 0xEE, count: 3)  // a prefix so that file offsets are not aligned
    for index in 0..<elements {
      let value = UInt32(index) &* 2_654_435_761
      withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
    #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
    return try body(try ReadableFile(path: path))
  }

  @Test(arguments: views, scratchSizes) func gatherMatchesNaiveWalk(view: View, scratchSize: Int) throws {
    let elements = 512
    try Self.withStorage(elements: elements) { file in
      let storage = StorageInfo(key: "0", dtype: .f32, fileOffset: 3, byteCount: Int64(elements * 4))
      let tensor = TensorInfo(
        name: "t", dtype: .f32, shape: view.shape, strides: view.strides, storageKey: "0", storageOffset: view.offset)
      let source = try StridedSource(file: file, storage: storage, tensor: tensor)
      var got: [UInt8] = []
      try StreamBuffer.with(size: scratchSize) { scratch in
        try source.stream(scratch: scratch) { chunk in got.append(contentsOf: chunk) }
      }
      let all = try file.readBytes(at: 3, count: elements * 4)
      var expected: [UInt8] = []
      let count = view.shape.reduce(1, *)
      for flat in 0..<count {
        var rest = flat
        var offset = view.offset
        for dim in stride(from: view.shape.count - 1, through: 0, by: -1) {
          offset += (rest % view.shape[dim]) * view.strides[dim]
          rest /= view.shape[dim]
        }
        expected.append(contentsOf: all[(offset * 4)..<(offset * 4 + 4)])
      }
      #expect(got == expected)
    }
  }
}
