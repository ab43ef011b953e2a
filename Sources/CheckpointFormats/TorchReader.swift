/// Reads `torch.save` files (zip and legacy) through a restricted pickle machine; nothing is executed.
///
/// The result describes every tensor (dtype, shape, strides, storage key and offset) and where each
/// storage's bytes lie in the file; no tensor data is read.
public enum TorchReader {
  /// Bounds on what a torch file may ask of the reader.
  public struct Limits: Sendable {
    /// Largest pickle (`data.pkl`, or each pickle of a legacy file) accepted.
    public var maxPickleBytes: Int64 = 64 << 20
    /// Deepest nesting of containers or MARKs.
    public var maxDepth = 100
    /// Most values on the pickle stack at once.
    public var maxStack = 1_000_000
    /// Most memo entries.
    public var maxMemo = 8_000_000
    /// Most tensors (and storages) in one file.
    public var maxTensors = 10_000_000
    /// Highest tensor rank.
    public var maxRank = 64
    /// Bounds for the zip directory.
    public var zip = ZipReader.Limits()
    public init() {}
  }

  /// Reads the tensor descriptors of a torch file, deciding zip or legacy by content.
  public static func read(path: String) throws -> StateDict {
    try read(path: path, limits: Limits())
  }

  /// Reads with explicit bounds; `checkCRC` also verifies every zip entry's CRC-32 (torch does not).
  public static func read(path: String, limits: Limits, checkCRC: Bool = false) throws -> StateDict {
    let file = try ReadableFile(path: path)
    let head = try file.readBytes(at: 0, count: Int(Swift.min(file.size, 4)))
    if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
      return try readZip(file: file, limits: limits, checkCRC: checkCRC)
    }
    if file.size >= 262, try file.readBytes(at: 257, count: 5) == Array("ustar".utf8) {
      throw CheckpointError(
        .unsupported, path: path, "tar-format torch file (torch < 0.4) is not supported; re-save it with torch.save")
    }
    if head.first == 0x80 {
      return try TorchLegacyReader.read(file: file, limits: limits)
    }
    throw CheckpointError(.invalidFormat, path: path, "not a torch file: neither a zip archive nor a pickle")
  }

  /// A `torch.save` zip archive: `<top>/data.pkl` plus `<top>/data/<key>` records.
  static func readZip(file: ReadableFile, limits: Limits, checkCRC: Bool) throws -> StateDict {
    let path = file.path
    let zip = try ZipReader(file: file, limits: limits.zip)
    if checkCRC { try StreamBuffer.with { scratch in try zip.verifyAllCRCs(scratch: scratch) } }
    if zip.entry("constants.pkl") != nil {
      throw CheckpointError(.unsupported, path: path, "TorchScript archive (constants.pkl), not a state dict")
    }
    if let version = zip.entry(".data/version") ?? zip.entry("version") {
      let text = try smallRecord(zip, version, limit: 64)
      guard let number = Int(text.trimmedWhitespace), (1...10).contains(number) else {
        throw CheckpointError(.unsupported, path: path, "torch archive format version '\(text)' is not supported")
      }
    }
    if let order = zip.entry("byteorder") {
      switch try smallRecord(zip, order, limit: 16).trimmedWhitespace {
      case "little": break
      case "big": throw CheckpointError(.unsupported, path: path, "big-endian torch file is not supported")
      case let other: throw CheckpointError(.invalidFormat, path: path, "unknown byteorder record '\(other)'")
      }
    }
    guard let pickle = zip.entry("data.pkl") else {
      throw CheckpointError(.invalidFormat, path: path, "torch archive has no \(zip.prefix)/data.pkl")
    }
    guard pickle.size <= limits.maxPickleBytes else {
      throw CheckpointError(
        .limitExceeded, path: path, "data.pkl is \(pickle.size) bytes, over the \(limits.maxPickleBytes)-byte limit")
    }
    let input = PickleInput(
      file: file, start: pickle.dataOffset, end: pickle.dataOffset + pickle.size, cap: limits.maxPickleBytes)
    var machine = PickleMachine(input: input, limits: limits)
    let tensors = try stateDictTensors(try machine.run(), path: path)
    var storages: [String: StorageInfo] = [:]
    for key in machine.storageOrder {
      guard let ref = machine.storages[key] else { continue }
      guard let record = zip.entry("data/\(key)") else {
        throw CheckpointError(.invalidFormat, path: path, "storage '\(key)' has no record data/\(key)")
      }
      let bytes = try machine.storageBytes(ref)
      guard record.size >= bytes else {
        throw CheckpointError(
          .truncated, path: path, "record data/\(key) holds \(record.size) bytes, the storage needs \(bytes)")
      }
      let dtype = machine.storageDTypes[key] ?? ref.typedDType ?? .u8
      storages[key] = StorageInfo(key: key, dtype: dtype, fileOffset: record.dataOffset, byteCount: bytes)
    }
    return StateDict(file: file, format: .torch, formatDetail: "torch zip", tensors: tensors, storages: storages)
  }

  /// A tiny text record (`version`, `byteorder`).
  static func smallRecord(_ zip: ZipReader, _ entry: ZipEntry, limit: Int64) throws -> String {
    guard entry.size <= limit else {
      throw CheckpointError(.invalidFormat, path: zip.file.path, "record \(entry.name) is unexpectedly large")
    }
    let bytes = try zip.file.readBytes(at: entry.dataOffset, count: Int(entry.size))
    return String(decoding: bytes, as: UTF8.self)
  }

  /// The tensors of a state dict: a `dict` or `OrderedDict` of name → tensor, or `{"state_dict": ...}`.
  static func stateDictTensors(_ root: PickleValue, path: String) throws -> [TensorInfo] {
    guard case .dict(var dict) = root else {
      throw CheckpointError(.unsupported, path: path, "not a state dict of tensors: the file holds a \(root.kind)")
    }
    if case .dict(let inner)? = dict.value(forKey: "state_dict") { dict = inner }
    var tensors: [TensorInfo] = []
    tensors.reserveCapacity(dict.entries.count)
    for (key, value) in dict.entries {
      guard case .string(let name) = key else {
        throw CheckpointError(.unsupported, path: path, "not a state dict of tensors: a key is a \(key.kind)")
      }
      guard case .tensor(var tensor) = value else {
        throw CheckpointError(
          .unsupported, path: path, "not a state dict of tensors: '\(name)' is a \(value.kind)")
      }
      tensor.name = name
      tensors.append(tensor)
    }
    return tensors
  }
}

extension String {
  /// The string without leading and trailing ASCII whitespace (Foundation-free).
  fileprivate var trimmedWhitespace: String {
    let blanks: Set<Character> = [" ", "\n", "\r", "\t"]
    var slice = Substring(self)
    while let first = slice.first, blanks.contains(first) { slice = slice.dropFirst() }
    while let last = slice.last, blanks.contains(last) { slice = slice.dropLast() }
    return String(slice)
  }
}
