import CheckpointFormats
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Builds test checkpoints in a fresh temporary folder with ckptd's own writers.
struct Fixtures {
  let root: String

  init() throws {
    root = NSTemporaryDirectory() + "ckptd-conv-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
  }

  /// Creates `root/name` and returns its path.
  func folder(_ name: String) throws -> String {
    let path = root + "/" + name
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  func remove() { try? FileManager.default.removeItem(atPath: root) }

  /// Little-endian bytes of f32 values.
  static func f32(_ values: [Float]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
  }

  /// Little-endian bytes of i64 values.
  static func i64(_ values: [Int64]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
  }

  /// A byte pattern of `count` bytes.
  static func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
  }

  /// Writes a torch zip with the given storages (key, dtype, bytes) and tensor views.
  static func writeTorch(_ path: String, storages: [(String, DType, [UInt8])], tensors: [TensorInfo]) throws {
    let output = try OutputFile(path: path)
    try StreamBuffer.with(size: 1 << 16) { scratch in
      try TorchWriter.write(
        storages: storages.map { OutputStorage(key: $0.0, dtype: $0.1, source: BytesSource($0.2)) }, tensors: tensors,
        archiveName: (OutputFile.split(path).1 as NSString).deletingPathExtension, to: output, scratch: scratch)
    }
    try output.commit()
  }

  /// Writes a safetensors file.
  static func writeSafetensors(
    _ path: String, tensors: [(String, DType, [Int], [UInt8])], metadata: [String: String] = ["format": "pt"]
  ) throws {
    let output = try OutputFile(path: path)
    try StreamBuffer.with(size: 1 << 16) { scratch in
      _ = try SafetensorsWriter.write(
        tensors: tensors.map { OutputTensor(name: $0.0, dtype: $0.1, shape: $0.2, source: BytesSource($0.3)) },
        metadata: metadata, to: output, scratch: scratch)
    }
    try output.commit()
  }

  /// A small GPT-2-like `.bin` state dict: tied embeddings, a transposed view, a partial slice of a shared
  /// storage, an int64 buffer, a 0-dim and an empty tensor.
  static func writeTiedBin(_ path: String) throws {
    try writeTorch(
      path,
      storages: [
        ("0", .f32, f32((0..<12).map { Float($0) * 0.5 - 2 })),
        ("1", .f32, f32((0..<6).map { Float($0) + 0.25 })),
        ("2", .i64, i64([1, -2, 3, 1 << 40])),
        ("3", .f32, f32([3.5])),
        ("4", .f32, []),
      ],
      tensors: [
        TensorInfo(name: "wte.weight", dtype: .f32, shape: [4, 3], storageKey: "0", isParameter: true),
        TensorInfo(name: "lm_head.weight", dtype: .f32, shape: [4, 3], storageKey: "0", isParameter: true),
        TensorInfo(name: "proj.weight", dtype: .f32, shape: [2, 3], storageKey: "1"),
        TensorInfo(name: "proj.weight_t", dtype: .f32, shape: [3, 2], strides: [1, 3], storageKey: "1"),
        TensorInfo(name: "proj.tail", dtype: .f32, shape: [2], storageKey: "1", storageOffset: 4),
        TensorInfo(name: "position_ids", dtype: .i64, shape: [4], storageKey: "2"),
        TensorInfo(name: "scale", dtype: .f32, shape: [], storageKey: "3"),
        TensorInfo(name: "empty", dtype: .f32, shape: [0, 3], storageKey: "4"),
      ])
  }

  /// Whole-file bytes (small test files only).
  static func bytes(_ path: String) -> [UInt8] {
    (FileManager.default.contents(atPath: path)).map { Array($0) } ?? []
  }

  /// Names in a folder.
  static func listing(_ folder: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
  }

  /// Writes a small file.
  static func touch(_ path: String, _ text: String = "x") {
    _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
  }

  /// mtime of a path as (seconds, nanoseconds).
  static func mtime(_ path: String) -> [Int] {
    var info = stat()
    guard stat(path, &info) == 0 else { return [] }
    return [Int(info.st_mtim.tv_sec), Int(info.st_mtim.tv_nsec)]
  }

  /// Sets a path's atime and mtime to a fixed past moment.
  static func backdate(_ path: String) {
    var times = [
      timespec(tv_sec: 1_700_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_700_000_000, tv_nsec: 123_456_789),
    ]
    _ = utimensat(AT_FDCWD, path, &times, 0)
  }
}
