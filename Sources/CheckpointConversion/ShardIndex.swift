import CheckpointFormats

/// A sharded checkpoint's index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`):
/// which shard holds each tensor, plus metadata such as `total_size`.
public struct ShardIndex: Sendable {
  /// Tensor name -> shard file name.
  public var weightMap: [String: String]
  /// The `metadata` object (total_size and anything else the writer put there).
  public var metadata: [String: JSONValue]
  /// Other top-level members, kept as they were.
  public var extra: [String: JSONValue]

  public init(weightMap: [String: String], metadata: [String: JSONValue] = [:], extra: [String: JSONValue] = [:]) {
    self.weightMap = weightMap
    self.metadata = metadata
    self.extra = extra
  }

  /// The shard file names, in first-seen sorted order.
  public var shardNames: [String] { Array(Set(weightMap.values)).sorted() }

  /// Reads and validates an index file: a JSON object with a `weight_map` of plain file names.
  public static func read(path: String) throws -> ShardIndex {
    let file = try ReadableFile(path: path)
    guard file.size <= 256 << 20 else {
      throw CheckpointError(.limitExceeded, path: path, "index file is larger than 256 MiB")
    }
    let bytes = try file.readBytes(at: 0, count: Int(file.size))
    let root = try JSONValue.parse(bytes, path: path, what: "index")
    guard let list = root.objectValue else {
      throw CheckpointError(.invalidFormat, path: path, "index is not a JSON object")
    }
    var members = Dictionary(list.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
    guard let map = members.removeValue(forKey: "weight_map")?.objectValue else {
      throw CheckpointError(.invalidFormat, path: path, "index has no \"weight_map\" object")
    }
    var weightMap: [String: String] = [:]
    for member in map {
      let name = member.key
      guard let shard = member.value.stringValue else {
        throw CheckpointError(.invalidFormat, path: path, "weight_map entry '\(name)' is not a file name")
      }
      guard isPlainFileName(shard) else {
        throw CheckpointError(
          .forbidden, path: path,
          "weight_map entry '\(name)' points at '\(shard)': shard names must be plain file names in the folder")
      }
      weightMap[name] = shard
    }
    var metadata: [String: JSONValue] = [:]
    if let value = members.removeValue(forKey: "metadata") {
      guard let object = value.objectValue else {
        throw CheckpointError(.invalidFormat, path: path, "index \"metadata\" is not an object")
      }
      metadata = Dictionary(object.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
    }
    return ShardIndex(weightMap: weightMap, metadata: metadata, extra: members)
  }

  /// The bytes transformers writes: `json.dumps(index, indent=2, sort_keys=True) + "\n"`.
  public func serialized() -> [UInt8] {
    var root = extra
    root["metadata"] = .sortedObject(metadata)
    root["weight_map"] = .sortedObject(weightMap.mapValues { JSONValue.string($0) })
    return ShardIndex.sortingKeys(.sortedObject(root)).encoded(indent: 2) + Array("\n".utf8)
  }

  /// `sort_keys=True` all the way down.
  static func sortingKeys(_ value: JSONValue) -> JSONValue {
    switch value {
    case .object(let members):
      return .sortedObject(Dictionary(members.map { ($0.key, sortingKeys($0.value)) }, uniquingKeysWith: { a, _ in a }))
    case .array(let elements):
      return .array(elements.map(sortingKeys))
    default:
      return value
    }
  }

  /// True for a name without '/', not '.', '..' or empty, and without NUL.
  public static func isPlainFileName(_ name: String) -> Bool {
    !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
  }
}
