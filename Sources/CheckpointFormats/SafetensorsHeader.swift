/// The parsed and validated header of a safetensors file: where every tensor's bytes are.
struct SafetensorsLayout: Sendable {
  /// N, the length of the JSON header (padding included).
  var headerSize: Int
  var metadata: [String: String]
  /// Tensors ordered by data offset (header order among zero-byte tensors at the same offset).
  var tensors: [TensorInfo]
  var storages: [String: StorageInfo]
  /// End of the last tensor's data, relative to the start of the byte buffer.
  var dataSize: Int64

  /// The exact size a complete file with this header has: 8 + N + data size.
  var expectedFileSize: Int64 { 8 + Int64(headerSize) + dataSize }
}

/// The safetensors header parser: one pass over the JSON bytes, straight into tensor descriptors, so that
/// a header of up to 100,000,000 bytes costs a small multiple of its size and no generic JSON tree.
///
/// Enforces the rules of the reference reader (safetensors `Metadata::validate`): an object whose
/// `__metadata__` member maps strings to strings; every other member a tensor entry with exactly `dtype`,
/// `shape` and `data_offsets`; known dtypes; non-negative integer dimensions; a span equal to the element
/// count times the dtype size (overflow-checked); offsets that, sorted, tile the byte buffer from 0 with no
/// hole and no overlap. Duplicate names are refused.
enum SafetensorsHeader {
  /// Largest rank accepted (torch's own limit is lower in practice); protects against absurd shapes.
  static let maxRank = 64

  /// dtypes newer safetensors versions know but ckptd cannot carry.
  static let knownUnsupportedDTypes: Set<String> = [
    "F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C128",
  ]

  private struct Entry {
    var name: String
    var dtype: DType
    var shape: [Int]
    var begin: Int
    var end: Int
  }

  /// Parses and validates `header` (the N bytes after the length prefix) of the file at `path`.
  static func parse(_ header: [UInt8], path: String) throws -> SafetensorsLayout {
    try header.withUnsafeBytes { raw in
      var scanner = JSONScanner(bytes: raw, path: path, what: "header")
      var metadata: [String: String]?
      var entries: [Entry] = []
      // Built while parsing: it also detects duplicate names, without a separate set.
      var storages: [String: StorageInfo] = [:]
      let dataStart = 8 + header.count
      try scanner.expect(0x7B, "'{' (the header must be a JSON object)")
      if !scanner.consume(0x7D) {
        repeat {
          let name = try scanner.parseString()
          try scanner.expect(0x3A, "':'")
          if name == "__metadata__" {
            guard metadata == nil else {
              throw CheckpointError(.invalidFormat, path: path, "header has more than one __metadata__")
            }
            metadata = try parseMetadata(&scanner)
          } else {
            let entry = try parseEntry(&scanner, name: name)
            let (fileOffset, overflow) = dataStart.addingReportingOverflow(entry.begin)
            guard !overflow else {
              throw CheckpointError(.limitExceeded, path: path, "tensor '\(name)': data offset is too large")
            }
            let storage = StorageInfo(
              key: name, dtype: entry.dtype, fileOffset: Int64(fileOffset), byteCount: Int64(entry.end - entry.begin))
            guard storages.updateValue(storage, forKey: name) == nil else {
              throw CheckpointError(.invalidFormat, path: path, "duplicate tensor name '\(name)' in the header")
            }
            entries.append(entry)
          }
        } while scanner.consume(0x2C)
        try scanner.expect(0x7D, "',' or '}'")
      }
      try scanner.finish()
      return try layout(
        entries, storages: storages, metadata: metadata ?? [:], headerSize: header.count, path: path)
    }
  }

  private static func parseMetadata(_ scanner: inout JSONScanner) throws -> [String: String] {
    let path = scanner.path
    guard scanner.peek() == 0x7B else {
      throw CheckpointError(.invalidFormat, path: path, "__metadata__ must be an object of strings")
    }
    try scanner.expect(0x7B, "'{'")
    var metadata: [String: String] = [:]
    if scanner.consume(0x7D) { return metadata }
    repeat {
      let key = try scanner.parseString()
      try scanner.expect(0x3A, "':'")
      guard scanner.peek() == 0x22 else {
        throw CheckpointError(.invalidFormat, path: path, "__metadata__ value for '\(key)' is not a string")
      }
      let value = try scanner.parseString()
      guard metadata.updateValue(value, forKey: key) == nil else {
        throw CheckpointError(.invalidFormat, path: path, "duplicate key '\(key)' in __metadata__")
      }
    } while scanner.consume(0x2C)
    try scanner.expect(0x7D, "',' or '}'")
    return metadata
  }

  private static func parseEntry(_ scanner: inout JSONScanner, name: String) throws -> Entry {
    let path = scanner.path
    func fail(_ message: String) -> CheckpointError {
      CheckpointError(.invalidFormat, path: path, "tensor '\(name)': \(message)")
    }
    guard scanner.peek() == 0x7B else { throw fail("entry must be an object with dtype, shape and data_offsets") }
    try scanner.expect(0x7B, "'{'")
    var dtype: DType?
    var shape: [Int]?
    var offsets: (Int, Int)?
    if !scanner.consume(0x7D) {
      repeat {
        let field = try scanner.parseString()
        try scanner.expect(0x3A, "':'")
        switch field {
        case "dtype":
          guard dtype == nil else { throw fail("duplicate field 'dtype'") }
          dtype = try parseDType(&scanner, fail: fail)
        case "shape":
          guard shape == nil else { throw fail("duplicate field 'shape'") }
          shape = try parseIntegerList(&scanner, field: "shape", name: name, limit: maxRank)
        case "data_offsets":
          guard offsets == nil else { throw fail("duplicate field 'data_offsets'") }
          let pair = try parseIntegerList(&scanner, field: "data_offsets", name: name, limit: 2)
          guard pair.count == 2 else { throw fail("data_offsets must be [begin, end]") }
          offsets = (pair[0], pair[1])
        default:
          throw fail("unexpected field '\(field)' (allowed: dtype, shape, data_offsets)")
        }
      } while scanner.consume(0x2C)
      try scanner.expect(0x7D, "',' or '}'")
    }
    guard let dtype else { throw fail("missing dtype") }
    guard let shape else { throw fail("missing shape") }
    guard let offsets else { throw fail("missing data_offsets") }
    return Entry(name: name, dtype: dtype, shape: shape, begin: offsets.0, end: offsets.1)
  }

  private static func parseDType(
    _ scanner: inout JSONScanner, fail: (String) -> CheckpointError
  ) throws -> DType {
    guard scanner.peek() == 0x22 else { throw fail("dtype must be a string") }
    let text = try scanner.parseString()
    if let dtype = DType(safetensorsName: text) { return dtype }
    if knownUnsupportedDTypes.contains(text) {
      var error = fail("dtype \(text) is not supported by ckptd")
      error.code = .unsupported
      throw error
    }
    throw fail("unknown dtype '\(text)'")
  }

  /// A JSON array of at most `limit` non-negative integers that fit in `Int`.
  private static func parseIntegerList(
    _ scanner: inout JSONScanner, field: String, name: String, limit: Int
  ) throws -> [Int] {
    let path = scanner.path
    let rule = "\(field) must be a list of non-negative integers"
    guard scanner.peek() == 0x5B else {
      throw CheckpointError(.invalidFormat, path: path, "tensor '\(name)': \(rule)")
    }
    try scanner.expect(0x5B, "'['")
    var values: [Int] = []
    if scanner.consume(0x5D) { return values }
    repeat {
      guard let next = scanner.peek(), next == 0x2D || (0x30...0x39).contains(next) else {
        throw CheckpointError(.invalidFormat, path: path, "tensor '\(name)': \(rule)")
      }
      let token = try scanner.scanNumber()
      guard token.isInteger, !token.isNegative else {
        throw CheckpointError(
          .invalidFormat, path: path, "tensor '\(name)': \(rule), found \(scanner.text(token))")
      }
      guard let value = scanner.integerValue(token) else {
        throw CheckpointError(
          .limitExceeded, path: path, "tensor '\(name)': \(field) value \(scanner.text(token)) is too large")
      }
      guard values.count < limit else {
        throw CheckpointError(
          .limitExceeded, path: path, "tensor '\(name)': \(field) has more than \(limit) entries")
      }
      values.append(value)
    } while scanner.consume(0x2C)
    try scanner.expect(0x5D, "',' or ']'")
    return values
  }

  /// Checks spans and tiling, and builds the descriptors in offset order.
  private static func layout(
    _ entries: [Entry], storages: [String: StorageInfo], metadata: [String: String], headerSize: Int,
    path: String
  ) throws -> SafetensorsLayout {
    for entry in entries {
      try checkSpan(entry, path: path)
    }
    let order = entries.indices.sorted { lhs, rhs in
      let a = entries[lhs]
      let b = entries[rhs]
      if a.begin != b.begin { return a.begin < b.begin }
      if a.end != b.end { return a.end < b.end }
      return lhs < rhs
    }
    let dataStart = Int64(8 + headerSize)
    var tensors: [TensorInfo] = []
    tensors.reserveCapacity(entries.count)
    var previous: (name: String, end: Int)?
    for index in order {
      let entry = entries[index]
      let expectedBegin = previous?.end ?? 0
      if entry.begin != expectedBegin {
        let what = entry.begin > expectedBegin ? "hole" : "overlap"
        let after = previous.map { "tensor '\($0.name)' ends at \($0.end)" } ?? "the data must start at 0"
        throw CheckpointError(
          .invalidFormat, path: path,
          "tensor '\(entry.name)' data starts at \(entry.begin) but \(after) (\(what) in the byte buffer)")
      }
      previous = (entry.name, entry.end)
      tensors.append(TensorInfo(name: entry.name, dtype: entry.dtype, shape: entry.shape, storageKey: entry.name))
    }
    let dataSize = Int64(previous?.end ?? 0)
    guard !dataStart.addingReportingOverflow(dataSize).overflow else {
      throw CheckpointError(.limitExceeded, path: path, "data offsets are too large")
    }
    return SafetensorsLayout(
      headerSize: headerSize, metadata: metadata, tensors: tensors, storages: storages, dataSize: dataSize)
  }

  /// `end - begin == product(shape) * dtype size`, overflow-checked. Also requires that the product of the
  /// non-zero dimensions fits, so that strides and element counts derived later cannot overflow.
  private static func checkSpan(_ entry: Entry, path: String) throws {
    guard entry.end >= entry.begin else {
      throw CheckpointError(
        .invalidFormat, path: path,
        "tensor '\(entry.name)': data_offsets [\(entry.begin), \(entry.end)] end before they begin")
    }
    var elements = 1
    var nonZeroProduct = 1
    for dim in entry.shape {
      let (product, overflow1) = elements.multipliedReportingOverflow(by: dim)
      let (strideProduct, overflow2) = nonZeroProduct.multipliedReportingOverflow(by: Swift.max(dim, 1))
      guard !overflow1, !overflow2 else {
        throw CheckpointError(
          .limitExceeded, path: path, "tensor '\(entry.name)': shape \(entry.shape) is too large (overflows)")
      }
      elements = product
      nonZeroProduct = strideProduct
    }
    let (bytes, overflow) = elements.multipliedReportingOverflow(by: entry.dtype.byteSize)
    guard !overflow else {
      throw CheckpointError(
        .limitExceeded, path: path, "tensor '\(entry.name)': shape \(entry.shape) is too large (overflows)")
    }
    guard entry.end - entry.begin == bytes else {
      throw CheckpointError(
        .invalidFormat, path: path,
        "tensor '\(entry.name)': \(entry.dtype.safetensorsName) \(entry.shape) needs \(bytes) bytes "
          + "but data_offsets [\(entry.begin), \(entry.end)] span \(entry.end - entry.begin)")
    }
  }
}
