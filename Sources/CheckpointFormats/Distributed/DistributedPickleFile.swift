/// A `torch.save` zip read with the distributed allowlist: the unpickled root as inert data plus where
/// each storage's bytes are. Used for ZeRO `*_states.pt` files (whole files) and DCP items (a zip archive
/// embedded in a `.distcp` file at `[start, end)`).
struct DistributedPickleFile {
  let file: ReadableFile
  let root: PickleValue
  let storages: [String: StorageInfo]

  /// A whole `torch.save` zip file.
  static func read(path: String, limits: TorchReader.Limits = TorchReader.Limits()) throws -> DistributedPickleFile {
    let file = try ReadableFile(path: path)
    let head = try file.readBytes(at: 0, count: Int(Swift.min(file.size, 4)))
    guard head.starts(with: [0x50, 0x4B, 0x03, 0x04]) else {
      throw CheckpointError(
        .invalidFormat, path: path, "not a torch.save zip archive (\(file.size) bytes; truncated or another format)")
    }
    let zip = try ZipReader(file: file, limits: limits.zip)
    var records: [String: ZipEntry] = [:]
    for (name, entry) in zip.recordNames.map({ ($0, zip.entry($0)) }) { records[name] = entry }
    return try load(file: file, records: records, limits: limits)
  }

  /// A `torch.save` zip embedded in `file` at `[start, end)`: its local headers are walked from `start`
  /// (DCP writes each item as a complete archive; the data offsets come from the local headers).
  static func read(
    file: ReadableFile, start: Int64, end: Int64, limits: TorchReader.Limits = TorchReader.Limits()
  ) throws -> DistributedPickleFile {
    let records = try EmbeddedZip.records(file: file, start: start, end: end)
    return try load(file: file, records: records, limits: limits)
  }

  /// Runs `data.pkl` and locates every storage it names.
  static func load(file: ReadableFile, records: [String: ZipEntry], limits: TorchReader.Limits) throws
    -> DistributedPickleFile
  {
    let path = file.path
    if let order = records["byteorder"] {
      let text = String(
        decoding: try file.readBytes(at: order.dataOffset, count: Int(min(order.size, 16))), as: UTF8.self)
      guard text.hasPrefix("little") else {
        throw CheckpointError(.unsupported, path: path, "byteorder '\(text)' is not supported")
      }
    }
    guard let pickle = records["data.pkl"] else {
      throw CheckpointError(.invalidFormat, path: path, "torch archive has no data.pkl")
    }
    guard pickle.size <= limits.maxPickleBytes else {
      throw CheckpointError(
        .limitExceeded, path: path, "data.pkl is \(pickle.size) bytes, over the \(limits.maxPickleBytes)-byte limit")
    }
    let input = PickleInput(
      file: file, start: pickle.dataOffset, end: pickle.dataOffset + pickle.size, cap: limits.maxPickleBytes)
    let machine = PickleMachine(input: input, limits: limits)
    machine.distributedGlobals = true
    let root = try machine.run()
    var storages: [String: StorageInfo] = [:]
    for key in machine.storageOrder {
      guard let ref = machine.storages[key] else { continue }
      guard let record = records["data/\(key)"] else {
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
    return DistributedPickleFile(file: file, root: root, storages: storages)
  }

  /// The file bytes of a 1-D (or any contiguous) tensor, checked to lie inside its storage.
  func piece(_ tensor: TensorInfo, what: String) throws -> FilePiece {
    guard let storage = storages[tensor.storageKey] else {
      throw CheckpointError(.invalidFormat, path: file.path, "\(what) refers to missing storage '\(tensor.storageKey)'")
    }
    var named = tensor
    named.name = what
    let source = try StridedSource(file: file, storage: storage, tensor: named)
    guard tensor.isContiguous else {
      throw CheckpointError(.unsupported, path: file.path, "\(what) is not contiguous")
    }
    let offset = storage.fileOffset + Int64(tensor.storageOffset) * Int64(tensor.dtype.byteSize)
    return FilePiece(file: file, offset: offset, byteCount: source.byteCount)
  }

  /// A strided view (a tensor of a state dict) as a source.
  func source(_ tensor: TensorInfo) throws -> any TensorSource {
    guard let storage = storages[tensor.storageKey] else {
      throw CheckpointError(
        .invalidFormat, path: file.path, "tensor '\(tensor.name)' refers to missing storage '\(tensor.storageKey)'")
    }
    return try StridedSource(file: file, storage: storage, tensor: tensor)
  }

  func fail(_ message: String) -> CheckpointError {
    CheckpointError(.invalidFormat, path: file.path, message)
  }
}

/// The records of a stored zip archive embedded in a larger file at `[start, end)` (a DCP item): the end
/// records sit at the item's end, every offset inside is relative to `start`, and each record's data
/// offset comes from its local header (torch pads there). torch writes data descriptors, so sizes come
/// from the central directory.
enum EmbeddedZip {
  static let maxRecords = 4096
  static let maxDirectoryBytes: Int64 = 16 << 20

  static func records(file: ReadableFile, start: Int64, end: Int64) throws -> [String: ZipEntry] {
    let path = file.path
    func bad(_ message: String) -> CheckpointError {
      CheckpointError(.invalidFormat, path: path, "item at bytes \(start)..<\(end): \(message)")
    }
    guard start >= 0, start <= end, end <= file.size else {
      throw CheckpointError(
        .truncated, path: path, "item at bytes \(start)..<\(end) lies outside the file (\(file.size) bytes)")
    }
    guard end - start >= 22 else { throw bad("too short for a zip archive") }
    let tail = ZipFields(try file.readBytes(at: end - 22, count: 22))
    guard tail.u32(0) == ZipReader.endSignature, let count16 = tail.u16(10), let size32 = tail.u32(12),
      let offset32 = tail.u32(16)
    else { throw bad("no zip end record at its end") }
    var entryCount = Int64(count16)
    var directorySize = Int64(size32)
    var directoryOffset = Int64(offset32)
    if count16 == 0xFFFF || size32 == 0xFFFF_FFFF || offset32 == 0xFFFF_FFFF {
      guard end - start >= 42 else { throw bad("zip64 locator missing") }
      let locator = ZipFields(try file.readBytes(at: end - 42, count: 20))
      guard locator.u32(0) == ZipReader.zip64LocatorSignature, let relative = locator.u64(8),
        relative <= UInt64(end - start - 56)
      else { throw bad("zip64 locator missing or out of range") }
      let record = ZipFields(try file.readBytes(at: start + Int64(relative), count: 56))
      guard record.u32(0) == ZipReader.zip64EndSignature, let n = record.u64(32), let size = record.u64(40),
        let offset = record.u64(48), n <= UInt64(maxRecords), size <= UInt64(maxDirectoryBytes),
        offset <= UInt64(end - start)
      else { throw bad("zip64 end record is invalid") }
      entryCount = Int64(n)
      directorySize = Int64(size)
      directoryOffset = Int64(offset)
    }
    guard entryCount > 0, entryCount <= Int64(maxRecords), directorySize <= maxDirectoryBytes,
      directoryOffset + directorySize <= end - start
    else { throw bad("central directory (\(entryCount) entries at \(directoryOffset)) is out of range") }
    let directory = try file.readBytes(at: start + directoryOffset, count: Int(directorySize))
    var records: [String: ZipEntry] = [:]
    var prefix: String?
    var position = 0
    for _ in 0..<entryCount {
      let header = ZipFields(directory, base: position)
      guard header.u32(0) == ZipReader.centralSignature, let flags = header.u16(8), let method = header.u16(10),
        let crc = header.u32(16), let compressed = header.u32(20), let size32 = header.u32(24),
        let nameLength = header.u16(28), let extraLength = header.u16(30), let commentLength = header.u16(32),
        let local32 = header.u32(42)
      else { throw bad("central directory entry at \(position) is malformed") }
      let nameStart = position + 46
      let extraStart = nameStart + Int(nameLength)
      let next = extraStart + Int(extraLength) + Int(commentLength)
      guard next <= directory.count else { throw bad("central directory entry at \(position) runs past its end") }
      let name = String(decoding: directory[nameStart..<extraStart], as: UTF8.self)
      guard flags & 0x1 == 0, method == 0 else {
        throw CheckpointError(.unsupported, path: path, "zip record '\(name)' is encrypted or compressed")
      }
      var size = UInt64(size32)
      var local = UInt64(local32)
      if size32 == 0xFFFF_FFFF || compressed == 0xFFFF_FFFF || local32 == 0xFFFF_FFFF {
        let extra = Array(directory[extraStart..<(extraStart + Int(extraLength))])
        guard let zip64 = ZipReader.zip64Extra(extra) else { throw bad("zip record '\(name)' lacks its zip64 sizes") }
        let fields = ZipFields(zip64)
        var at = 0
        func take() throws -> UInt64 {
          guard let v = fields.u64(at) else { throw bad("zip record '\(name)' has a short zip64 field") }
          at += 8
          return v
        }
        if size32 == 0xFFFF_FFFF { size = try take() }
        if compressed == 0xFFFF_FFFF { _ = try take() }
        if local32 == 0xFFFF_FFFF { local = try take() }
      }
      guard local <= UInt64(directoryOffset), size <= UInt64(directoryOffset) else {
        throw bad("zip record '\(name)' lies outside the archive")
      }
      let headerAt = start + Int64(local)
      let localHeader = ZipFields(try file.readBytes(at: headerAt, count: Int(min(30, end - headerAt))))
      guard localHeader.u32(0) == ZipReader.localSignature, let localName = localHeader.u16(26),
        let localExtra = localHeader.u16(28)
      else { throw bad("zip record '\(name)' has no local header") }
      let dataOffset = headerAt + 30 + Int64(localName) + Int64(localExtra)
      guard dataOffset + Int64(size) <= start + directoryOffset else {
        throw CheckpointError(.truncated, path: path, "zip record '\(name)' runs past its item's data")
      }
      guard let slash = name.firstIndex(of: "/") else { throw bad("zip record '\(name)' is not in a top folder") }
      let top = String(name[..<slash])
      if prefix == nil { prefix = top }
      guard top == prefix else { throw bad("zip record '\(name)' lies outside the top folder") }
      let record = String(name[name.index(after: slash)...])
      let entry = ZipEntry(
        name: name, dataOffset: dataOffset, size: Int64(size), crc32: crc, localHeaderOffset: headerAt)
      guard records.updateValue(entry, forKey: record) == nil else { throw bad("duplicate zip record '\(name)'") }
      position = next
    }
    return records
  }
}
