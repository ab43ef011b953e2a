/// Reads the legacy (pre-1.6, `_use_new_zipfile_serialization=False`) torch format: a run of pickles
/// (magic number, protocol version, sys_info, the object, the sorted storage keys), then for each key an
/// int64 element count and the raw bytes. Storages are located by offset; nothing is loaded.
enum TorchLegacyReader {
  /// `0x1950A86A20F9469CFC6C` as `LONG1` stores it (little-endian).
  static let magicNumber: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
  static let protocolVersion: Int64 = 1001

  static func read(file: ReadableFile, limits: TorchReader.Limits) throws -> StateDict {
    let path = file.path
    var machine = PickleMachine(
      input: PickleInput(file: file, start: 0, end: file.size, cap: limits.maxPickleBytes), limits: limits)
    guard case .bigInt(let magic) = try machine.run(), magic == magicNumber else {
      throw CheckpointError(.invalidFormat, path: path, "pickle file without the torch legacy magic number")
    }
    try machine.restart(limits: limits)
    guard case .int(let version) = try machine.run(), version == protocolVersion else {
      throw CheckpointError(.unsupported, path: path, "torch legacy protocol version is not 1001")
    }
    try machine.restart(limits: limits)
    guard case .dict(let sysInfo) = try machine.run() else {
      throw CheckpointError(.invalidFormat, path: path, "torch legacy file has no sys_info dict")
    }
    if case .bool(false)? = sysInfo.value(forKey: "little_endian") {
      throw CheckpointError(.unsupported, path: path, "big-endian torch legacy file is not supported")
    }
    try machine.restart(limits: limits)
    let tensors = try TorchReader.stateDictTensors(try machine.run(), path: path)
    try machine.restart(limits: limits)
    guard case .list(let keyList) = try machine.run() else {
      throw CheckpointError(.invalidFormat, path: path, "torch legacy file has no list of storage keys")
    }
    let storages = try locateStorages(
      keys: keyList.items, machine: machine, file: file, dataStart: machine.input.position)
    return StateDict(file: file, format: .torch, formatDetail: "torch legacy", tensors: tensors, storages: storages)
  }

  /// Walks the storage records in key-list order: `int64 numel` then `numel * element size` bytes.
  static func locateStorages(
    keys: [PickleValue], machine: PickleMachine, file: ReadableFile, dataStart: Int64
  ) throws -> [String: StorageInfo] {
    let path = file.path
    var storages: [String: StorageInfo] = [:]
    var offset = dataStart
    for item in keys {
      guard let key = item.asString else {
        throw CheckpointError(.invalidFormat, path: path, "storage key list holds a \(item.kind)")
      }
      guard let ref = machine.storages[key] else {
        throw CheckpointError(.invalidFormat, path: path, "storage key '\(key)' is not used by the pickle")
      }
      guard storages[key] == nil else {
        throw CheckpointError(.invalidFormat, path: path, "storage key '\(key)' is listed twice")
      }
      let header = try file.readBytes(at: offset, count: 8)
      let numel = Int64(bitPattern: header.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
      guard numel == ref.numel else {
        throw CheckpointError(
          .invalidFormat, path: path, "storage '\(key)' holds \(numel) elements, the pickle says \(ref.numel)")
      }
      let bytes = try machine.storageBytes(ref)
      let dataOffset = offset + 8
      let (end, overflow) = dataOffset.addingReportingOverflow(bytes)
      guard !overflow, end <= file.size else {
        throw CheckpointError(
          .truncated, path: path, "storage '\(key)' (\(bytes) bytes at \(dataOffset)) runs past the end of the file")
      }
      let dtype = machine.storageDTypes[key] ?? ref.typedDType ?? .u8
      storages[key] = StorageInfo(key: key, dtype: dtype, fileOffset: dataOffset, byteCount: bytes)
      offset = end
    }
    for key in machine.storageOrder where storages[key] == nil {
      throw CheckpointError(.invalidFormat, path: path, "storage '\(key)' is missing from the storage key list")
    }
    return storages
  }
}

extension PickleMachine {
  /// Continues with the next pickle of a legacy file, right after the previous STOP.
  mutating func restart(limits: TorchReader.Limits) throws {
    input = PickleInput(file: input.file, start: input.position, end: input.end, cap: limits.maxPickleBytes)
  }
}
