import Foundation

@testable import CheckpointFormats

/// A test-only pickle emitter: writes protocol-2 opcodes by hand, the way torch's pickler does.
struct PickleEmitter {
  var bytes: [UInt8] = [0x80, 0x02]

  mutating func op(_ code: UInt8) { bytes.append(code) }
  mutating func raw(_ more: [UInt8]) { bytes.append(contentsOf: more) }

  mutating func le(_ value: UInt64, _ count: Int) {
    for i in 0..<count { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
  }

  mutating func global(_ module: String, _ name: String) {
    op(0x63)
    raw(Array("\(module)\n\(name)\n".utf8))
  }

  mutating func string(_ text: String) {
    let utf8 = Array(text.utf8)
    op(0x58)
    le(UInt64(utf8.count), 4)
    raw(utf8)
  }

  /// BININT1 / BININT2 / BININT / LONG1, as CPython chooses.
  mutating func int(_ value: Int64) {
    if value >= 0 && value <= 0xFF {
      op(0x4B)
      le(UInt64(value), 1)
    } else if value >= 0 && value <= 0xFFFF {
      op(0x4D)
      le(UInt64(value), 2)
    } else if value >= Int64(Int32.min) && value <= Int64(Int32.max) {
      op(0x4A)
      le(UInt64(bitPattern: value), 4)
    } else {
      op(0x8A)
      op(8)
      le(UInt64(bitPattern: value), 8)
    }
  }

  mutating func mark() { op(0x28) }
  mutating func tuple() { op(0x74) }
  mutating func put(_ index: UInt8) { raw([0x71, index]) }
  mutating func get(_ index: UInt8) { raw([0x68, index]) }
  mutating func stop() { op(0x2E) }
  mutating func emptyTuple() { op(0x29) }
  mutating func reduce() { op(0x52) }

  mutating func intTuple(_ values: [Int64]) {
    mark()
    for v in values { int(v) }
    tuple()
  }

  /// `OrderedDict()` (the backward-hooks argument).
  mutating func emptyOrderedDict() {
    global("collections", "OrderedDict")
    emptyTuple()
    reduce()
  }

  /// `("storage", cls, key, "cpu", numel[, None])` + BINPERSID.
  mutating func storage(module: String = "torch", cls: String, key: String, numel: Int64, legacy: Bool = false) {
    mark()
    string("storage")
    global(module, cls)
    string(key)
    string("cpu")
    int(numel)
    if legacy { op(0x4E) }
    tuple()
    op(0x51)
  }

  /// One tensor value, built as torch's `__reduce_ex__` does (v2, or v3 for untyped storages).
  mutating func tensor(_ t: FixtureTensor, legacy: Bool = false) {
    if t.isParameter { global("torch._utils", "_rebuild_parameter") }
    global("torch._utils", t.untyped ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2")
    mark()
    if t.untyped {
      storage(
        module: "torch.storage", cls: "UntypedStorage", key: t.key, numel: t.storageNumel * Int64(t.dtype.byteSize),
        legacy: legacy)
    } else {
      storage(cls: t.dtype.legacyStorageClass ?? "FloatStorage", key: t.key, numel: t.storageNumel, legacy: legacy)
    }
    int(t.offset)
    intTuple(t.shape)
    intTuple(t.strides)
    op(t.requiresGrad && !t.isParameter ? 0x88 : 0x89)
    emptyOrderedDict()
    if t.untyped { global("torch", t.dtype.torchName) }
    tuple()
    reduce()
    if t.isParameter {
      op(t.requiresGrad ? 0x88 : 0x89)
      emptyOrderedDict()
      op(0x87)  // TUPLE3
      reduce()
    }
  }

  enum Container { case dict, orderedDict, wrapped }

  /// A whole state-dict pickle.
  static func stateDict(_ tensors: [FixtureTensor], container: Container = .dict, legacy: Bool = false) -> [UInt8] {
    var p = PickleEmitter()
    if container == .wrapped {
      p.op(0x7D)
      p.string("state_dict")
    }
    if container == .orderedDict {
      p.emptyOrderedDict()
    } else {
      p.op(0x7D)
    }
    p.mark()
    for t in tensors {
      p.string(t.name)
      p.tensor(t, legacy: legacy)
    }
    p.op(0x75)  // SETITEMS
    if container == .orderedDict {
      // BUILD with {'_metadata': {'': {'version': 1}}}
      p.op(0x7D)
      p.string("_metadata")
      p.op(0x7D)
      p.string("")
      p.op(0x7D)
      p.string("version")
      p.int(1)
      p.raw([0x73, 0x73, 0x73, 0x62])
    }
    if container == .wrapped { p.op(0x73) }
    p.stop()
    return p.bytes
  }
}

/// A tensor for fixtures: a view over storage `key` of `storageNumel` elements.
struct FixtureTensor {
  var name: String
  var dtype: DType = .f32
  var key: String
  var storageNumel: Int64
  var offset: Int64 = 0
  var shape: [Int64]
  var strides: [Int64]
  var requiresGrad = false
  var isParameter = false

  var untyped: Bool { dtype.legacyStorageClass == nil }

  init(
    _ name: String, dtype: DType = .f32, key: String, storageNumel: Int64, offset: Int64 = 0, shape: [Int64],
    strides: [Int64]? = nil, requiresGrad: Bool = false, isParameter: Bool = false
  ) {
    self.name = name
    self.dtype = dtype
    self.key = key
    self.storageNumel = storageNumel
    self.offset = offset
    self.shape = shape
    self.strides = strides ?? TensorInfo.contiguousStrides(shape.map { Int($0) }).map { Int64($0) }
    self.requiresGrad = requiresGrad
    self.isParameter = isParameter
  }
}

/// A hand-built zip archive plus where its records landed, so tests can corrupt single fields.
struct ZipFixture {
  struct Entry {
    var name: String
    var data: [UInt8]
  }

  var bytes: [UInt8] = []
  var localOffsets: [Int] = []
  var centralOffsets: [Int] = []
  var centralDirectoryOffset = 0
  var zip64EndOffset: Int?
  var endOffset = 0

  /// Builds stored entries (local header, data; central directory; optional zip64 end records).
  init(_ entries: [Entry], zip64: Bool = true) {
    func le(_ value: UInt64, _ count: Int) {
      for i in 0..<count { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }
    for entry in entries {
      localOffsets.append(bytes.count)
      let name = Array(entry.name.utf8)
      le(0x0403_4B50, 4)
      le(20, 2)
      le(0x0800, 2)
      le(0, 2)
      le(0, 4)
      le(UInt64(crc32(entry.data)), 4)
      le(UInt64(entry.data.count), 4)
      le(UInt64(entry.data.count), 4)
      le(UInt64(name.count), 2)
      le(0, 2)
      bytes += name
      bytes += entry.data
    }
    centralDirectoryOffset = bytes.count
    for (entry, local) in zip(entries, localOffsets) {
      centralOffsets.append(bytes.count)
      let name = Array(entry.name.utf8)
      le(0x0201_4B50, 4)
      le(0x031E, 2)
      le(20, 2)
      le(0x0800, 2)
      le(0, 2)
      le(0, 4)
      le(UInt64(crc32(entry.data)), 4)
      le(UInt64(entry.data.count), 4)
      le(UInt64(entry.data.count), 4)
      le(UInt64(name.count), 2)
      le(0, 6)  // extra length, comment length, disk
      le(0, 2)  // internal attributes
      le(0, 4)  // external attributes
      le(UInt64(local), 4)
      bytes += name
    }
    let cdSize = bytes.count - centralDirectoryOffset
    if zip64 {
      zip64EndOffset = bytes.count
      le(0x0606_4B50, 4)
      le(44, 8)
      le(0x031E, 2)
      le(0x2D, 2)
      le(0, 8)
      le(UInt64(entries.count), 8)
      le(UInt64(entries.count), 8)
      le(UInt64(cdSize), 8)
      le(UInt64(centralDirectoryOffset), 8)
      le(0x0706_4B50, 4)
      le(0, 4)
      le(UInt64(zip64EndOffset ?? 0), 8)
      le(1, 4)
    }
    endOffset = bytes.count
    le(0x0605_4B50, 4)
    le(0, 4)
    le(UInt64(entries.count), 2)
    le(UInt64(entries.count), 2)
    le(UInt64(cdSize), 4)
    le(UInt64(centralDirectoryOffset), 4)
    le(0, 2)
  }

  mutating func patch(_ offset: Int, _ value: UInt64, _ count: Int) {
    for i in 0..<count { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
  }
}

/// A standard CRC-32 (zlib polynomial) for fixtures.
func crc32(_ data: [UInt8]) -> UInt32 {
  var crc: UInt32 = 0xFFFF_FFFF
  for byte in data {
    crc ^= UInt32(byte)
    for _ in 0..<8 { crc = (crc >> 1) ^ (crc & 1 == 1 ? 0xEDB8_8320 : 0) }
  }
  return ~crc
}

/// A scratch folder removed when the value goes away.
final class FixtureFolder {
  let url: URL

  init() throws {
    url = FileManager.default.temporaryDirectory.appendingPathComponent("ckptd-torchread-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  }

  deinit { try? FileManager.default.removeItem(at: url) }

  func write(_ name: String, _ bytes: [UInt8]) throws -> String {
    let path = url.appendingPathComponent(name).path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
  }
}

/// Little-endian float32 bytes of `values`.
func float32Bytes(_ values: [Float]) -> [UInt8] {
  values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
}

/// A torch-style zip archive: data.pkl, byteorder, data/<key> records, version.
func torchZip(pickle: [UInt8], records: [(String, [UInt8])], top: String = "archive", byteorder: String = "little")
  -> ZipFixture
{
  var entries = [ZipFixture.Entry(name: "\(top)/data.pkl", data: pickle)]
  entries.append(.init(name: "\(top)/byteorder", data: Array(byteorder.utf8)))
  for (key, data) in records { entries.append(.init(name: "\(top)/data/\(key)", data: data)) }
  entries.append(.init(name: "\(top)/version", data: Array("3\n".utf8)))
  return ZipFixture(entries)
}

/// Streams a tensor's bytes out of a state dict.
func tensorBytes(_ state: StateDict, _ name: String) throws -> [UInt8] {
  guard let tensor = state.tensors.first(where: { $0.name == name }) else { return [] }
  var out: [UInt8] = []
  try StreamBuffer.with(size: 16) { scratch in
    try state.source(for: tensor).stream(scratch: scratch) { chunk in out += chunk }
  }
  return out
}
