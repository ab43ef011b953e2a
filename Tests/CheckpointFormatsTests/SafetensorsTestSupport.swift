import Foundation

@testable import CheckpointFormats

/// Fixtures for the safetensors suites, built in a fresh temporary folder per use.
enum SafetensorsFixture {
  /// A new empty folder under the system temporary folder.
  static func makeDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "ckptd-st-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  static func remove(_ directory: String) {
    try? FileManager.default.removeItem(atPath: directory)
  }

  /// Writes `bytes` to `directory/name` and returns the path.
  static func writeFile(_ bytes: [UInt8], in directory: String, name: String = "model.safetensors") throws -> String {
    let path = directory + "/" + name
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
  }

  /// The bytes of a file: 8-byte little-endian `header.count`, `header`, then `data`.
  static func file(header: [UInt8], data: [UInt8] = []) -> [UInt8] {
    var bytes: [UInt8] = []
    for index in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: UInt64(header.count) >> (8 * UInt64(index)))) }
    return bytes + header + data
  }

  /// `file(header:data:)` with the header given as text.
  static func file(json: String, data: [UInt8] = []) -> [UInt8] {
    file(header: Array(json.utf8), data: data)
  }

  /// Reads a whole (small) file.
  static func contents(_ path: String) throws -> [UInt8] {
    let file = try ReadableFile(path: path)
    return try file.readBytes(at: 0, count: Int(file.size))
  }

  /// Writes `tensors` with `SafetensorsWriter` to `directory/name`, committed.
  @discardableResult
  static func write(
    _ tensors: [OutputTensor], metadata: [String: String] = [:], in directory: String,
    name: String = "out.safetensors"
  ) throws -> String {
    let path = directory + "/" + name
    let output = try OutputFile(path: path)
    _ = try StreamBuffer.with(size: 64) { scratch in
      try SafetensorsWriter.write(tensors: tensors, metadata: metadata, to: output, scratch: scratch)
    }
    try output.commit()
    return path
  }

  /// Deterministic bytes for a tensor (distinct per name so that mix-ups show).
  static func pattern(count: Int, seed: String) -> [UInt8] {
    var state = UInt32(truncatingIfNeeded: seed.utf8.reduce(17) { $0 &* 31 &+ Int($1) })
    return (0..<count).map { _ in
      state = state &* 1_103_515_245 &+ 12_345
      return UInt8(truncatingIfNeeded: state >> 16)
    }
  }

  /// Streams a tensor's bytes out of a state dict into an array.
  static func bytes(of tensor: TensorInfo, in dict: StateDict) throws -> [UInt8] {
    var out: [UInt8] = []
    let source = try dict.source(for: tensor)
    try StreamBuffer.with(size: 16) { scratch in
      try source.stream(scratch: scratch) { chunk in out.append(contentsOf: chunk) }
    }
    return out
  }
}

/// A source that lies about its size, for the writer's checks.
struct LyingSource: TensorSource {
  var byteCount: Int64
  var actual: [UInt8]

  func stream(
    scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void
  ) throws {
    try actual.withUnsafeBytes { raw in try body(raw) }
  }
}
