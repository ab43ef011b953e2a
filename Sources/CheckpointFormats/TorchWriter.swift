/// Writes a `torch.save`-layout zip that `torch.load(weights_only=True, mmap=True)` loads.
///
/// Records in torch 2.x order: `data.pkl`, `.format_version` ("1"), `.storage_alignment` ("64"),
/// `byteorder` ("little"), `data/0` ... `data/n-1`, `version` ("3\n"), `.data/serialization_id`.
/// Storage keys are renumbered "0", "1", ... in order of first use by `tensors`; storages no tensor
/// uses are not written. Two tensors naming one storage (tied weights) share one record.
public enum TorchWriter {
  /// Writes the archive and finishes it; the caller commits `output`.
  ///
  /// Every tensor must refer to a storage in `storages` with the same dtype, and every element its
  /// shape, strides and offset reach must lie inside that storage.
  public static func write(
    storages: [OutputStorage], tensors: [TensorInfo], archiveName: String, to output: OutputFile,
    scratch: UnsafeMutableRawBufferPointer
  ) throws {
    let plan = try plan(storages: storages, tensors: tensors, path: output.path)
    let zip = try ZipWriter(output: output, archiveName: archiveName)
    try zip.addRecord("data.pkl", bytes: PickleWriter.stateDict(plan.entries))
    try zip.addRecord(".format_version", bytes: Array("1".utf8))
    try zip.addRecord(".storage_alignment", bytes: Array("64".utf8))
    try zip.addRecord("byteorder", bytes: Array("little".utf8))
    for (index, storage) in plan.records.enumerated() {
      try zip.addRecord("data/\(index)", source: storage.source, scratch: scratch)
    }
    try zip.addRecord("version", bytes: Array("3\n".utf8))
    try zip.addRecord(".data/serialization_id", bytes: serializationID(zip.entries))
    try zip.finish()
  }

  /// The archive folder name torch derives from a file name: the last path component without its last
  /// extension (`pytorch_model.bin` -> `pytorch_model`, as PyTorch's C++ `basename`), or `archive` when
  /// that is empty or not ASCII (torch then writes through a buffer, named `archive`).
  public static func archiveName(forFile path: String) -> String {
    let base = OutputFile.split(path).1
    var stem = base
    if let dot = base.lastIndex(of: ".") {
      stem = String(base[..<dot])
    }
    if stem.isEmpty || !stem.unicodeScalars.allSatisfy({ $0.isASCII }) { return "archive" }
    return stem
  }

  /// What goes into the archive: pickle entries and storage records in record order.
  struct Plan {
    var entries: [PickleWriter.TensorEntry]
    var records: [OutputStorage]
  }

  /// Renumbers storages in order of first use and validates every tensor against its storage.
  static func plan(storages: [OutputStorage], tensors: [TensorInfo], path: String) throws -> Plan {
    var byKey: [String: OutputStorage] = [:]
    for storage in storages {
      guard byKey.updateValue(storage, forKey: storage.key) == nil else {
        throw CheckpointError(.invalidFormat, path: path, "storage key '\(storage.key)' given twice")
      }
    }
    var names = Set<String>()
    var recordKeys: [String: String] = [:]
    var records: [OutputStorage] = []
    var entries: [PickleWriter.TensorEntry] = []
    entries.reserveCapacity(tensors.count)
    for tensor in tensors {
      guard names.insert(tensor.name).inserted else {
        throw CheckpointError(.invalidFormat, path: path, "tensor name '\(tensor.name)' given twice")
      }
      guard let storage = byKey[tensor.storageKey] else {
        throw CheckpointError(
          .invalidFormat, path: path, "tensor '\(tensor.name)' refers to missing storage '\(tensor.storageKey)'")
      }
      try validate(tensor, in: storage, path: path)
      let key: String
      if let existing = recordKeys[tensor.storageKey] {
        key = existing
      } else {
        key = String(records.count)
        recordKeys[tensor.storageKey] = key
        records.append(storage)
      }
      entries.append(
        PickleWriter.TensorEntry(
          name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, strides: tensor.strides,
          storageOffset: tensor.storageOffset, storageKey: key, storageByteCount: storage.source.byteCount,
          isParameter: tensor.isParameter, requiresGrad: tensor.requiresGrad))
    }
    return Plan(entries: entries, records: records)
  }

  /// Checks dtype, ranks, signs and that the view's extent fits the storage (overflow-checked).
  static func validate(_ tensor: TensorInfo, in storage: OutputStorage, path: String) throws {
    func fail(_ message: String) -> CheckpointError {
      CheckpointError(.invalidFormat, path: path, "tensor '\(tensor.name)': \(message)")
    }
    guard tensor.dtype == storage.dtype else {
      throw fail("dtype \(tensor.dtype.rawValue) differs from its storage's \(storage.dtype.rawValue)")
    }
    let itemSize = Int64(tensor.dtype.byteSize)
    let storageBytes = storage.source.byteCount
    guard storageBytes >= 0, storageBytes % itemSize == 0 else {
      throw fail("storage of \(storageBytes) bytes is not a whole number of \(itemSize)-byte elements")
    }
    guard tensor.shape.count == tensor.strides.count else { throw fail("shape and stride ranks differ") }
    guard tensor.storageOffset >= 0 else { throw fail("negative storage offset") }
    var lastElement = Int64(tensor.storageOffset)
    var empty = false
    for (size, stride) in zip(tensor.shape, tensor.strides) {
      guard size >= 0, stride >= 0 else { throw fail("negative size or stride") }
      if size == 0 { empty = true }
      let (span, o1) = Int64(Swift.max(size - 1, 0)).multipliedReportingOverflow(by: Int64(stride))
      let (sum, o2) = lastElement.addingReportingOverflow(span)
      guard !o1, !o2 else {
        throw CheckpointError(.limitExceeded, path: path, "tensor '\(tensor.name)': size overflows")
      }
      lastElement = sum
    }
    if empty { return }
    guard lastElement < storageBytes / itemSize else {
      throw fail("reaches element \(lastElement) of a storage with \(storageBytes / itemSize) elements")
    }
  }

  /// 40 ASCII digits, deterministic in the records written: 20 digits of an FNV-1a hash of the record
  /// names, then 20 digits of a combination of their CRC-32s (torch's own value hashes the same inputs).
  static func serializationID(_ entries: [ZipWriter.Entry]) -> [UInt8] {
    var nameHash: UInt64 = 0xcbf2_9ce4_8422_2325
    var crcHash: UInt64 = 0
    for entry in entries {
      for byte in entry.name.utf8 {
        nameHash = (nameHash ^ UInt64(byte)) &* 0x100_0000_01b3
      }
      crcHash = crcHash ^ (UInt64(entry.crc32) &+ 0x9e37_79b9_7f4a_7c15 &+ (crcHash << 6) &+ (crcHash >> 2))
    }
    func digits(_ value: UInt64) -> String {
      let text = String(value)
      return String(repeating: "0", count: 20 - text.count) + text
    }
    return Array((digits(nameHash) + digits(crcHash)).utf8)
  }
}
