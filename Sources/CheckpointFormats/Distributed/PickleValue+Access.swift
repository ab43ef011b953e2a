/// Typed access to unpickled data for the distributed readers; every mismatch is an error naming the file.
struct PickleAccess {
  let path: String

  func fail(_ message: String) -> CheckpointError {
    CheckpointError(.invalidFormat, path: path, message)
  }

  func dict(_ value: PickleValue?, _ what: String) throws -> PickleDict {
    guard case .dict(let d)? = value else { throw fail("\(what) is \(value?.kind ?? "missing"), not a dict") }
    return d
  }

  func optionalDict(_ value: PickleValue?, _ what: String) throws -> PickleDict? {
    switch value {
    case nil, .none?: return nil
    default: return try dict(value, what)
    }
  }

  func list(_ value: PickleValue?, _ what: String) throws -> [PickleValue] {
    switch value {
    case .list(let l)?: return l.items
    case .tuple(let t)?: return t.items
    default: throw fail("\(what) is \(value?.kind ?? "missing"), not a list")
    }
  }

  func int(_ value: PickleValue?, _ what: String) throws -> Int {
    guard case .int(let v)? = value, v >= 0, v <= Int64(Int32.max) * 1024 else {
      throw fail("\(what) is \(value?.kind ?? "missing"), not a count")
    }
    return Int(v)
  }

  func string(_ value: PickleValue?, _ what: String) throws -> String {
    guard case .string(let s)? = value else { throw fail("\(what) is \(value?.kind ?? "missing"), not a string") }
    return s
  }

  func tensor(_ value: PickleValue?, _ what: String) throws -> TensorInfo {
    guard case .tensor(let t)? = value else { throw fail("\(what) is \(value?.kind ?? "missing"), not a tensor") }
    return t
  }

  /// A shape: `torch.Size` (a tuple after the machine) or a list of sizes.
  func shape(_ value: PickleValue?, _ what: String) throws -> [Int] {
    let items = try list(value, what)
    guard items.count <= 64 else { throw fail("\(what) has rank \(items.count)") }
    var shape: [Int] = []
    var count = 1
    for item in items {
      let size = try int(item, what)
      let (product, overflow) = count.multipliedReportingOverflow(by: size)
      guard !overflow, product <= Int(Int32.max) * 1024 else { throw fail("\(what) is too large") }
      count = product
      shape.append(size)
    }
    return shape
  }

  /// An inert record of the given type.
  func record(_ value: PickleValue?, _ type: String, _ what: String) throws -> PickleObject {
    guard case .object(let o)? = value, o.type == type else {
      throw fail("\(what) is \(value?.kind ?? "missing"), not a \(type)")
    }
    return o
  }

  /// A record's `BUILD` state as a dict (dataclasses and plain objects).
  func state(_ record: PickleObject, _ what: String) throws -> PickleDict {
    try dict(record.state, "\(what) state")
  }

  /// String-keyed entries of a dict, in order.
  func stringEntries(_ d: PickleDict, _ what: String) throws -> [(String, PickleValue)] {
    try d.entries.map { entry in
      guard case .string(let key) = entry.key else { throw fail("\(what) has a \(entry.key.kind) key") }
      return (key, entry.value)
    }
  }
}

/// Element count of a shape, for shapes already bounded by `PickleAccess.shape`.
func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }
