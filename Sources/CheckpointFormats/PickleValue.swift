/// A value on the restricted pickle machine's stack. Nothing here can run code: globals are names,
/// and the only "objects" are the tensors and storages a state dict is made of.
enum PickleValue {
  case none
  case bool(Bool)
  case int(Int64)
  /// A `LONG1` integer too wide for 64 bits: little-endian two's complement bytes.
  case bigInt([UInt8])
  case float(Double)
  case string(String)
  case bytes([UInt8])
  case tuple(PickleTuple)
  case list(PickleList)
  case dict(PickleDict)
  /// A module attribute named by `GLOBAL`, already checked against the allowlist.
  indirect case global(module: String, name: String)
  /// A storage reference produced by `BINPERSID`.
  indirect case storage(PickleStorageRef)
  /// A tensor produced by `_rebuild_tensor_*` / `_rebuild_parameter`; `name` is filled in later.
  indirect case tensor(TensorInfo)
  /// An inert record of an allowlisted class (distributed checkpoints only): its name, the arguments it
  /// was built with and its `BUILD` state. Nothing is constructed or called.
  case object(PickleObject)

  /// Container nesting depth (0 for scalars), bounded by the machine so deinit never recurses deeply.
  var depth: Int {
    switch self {
    case .tuple(let t): t.depth
    case .list(let l): l.depth
    case .dict(let d): d.depth
    case .object(let o): o.depth
    default: 0
    }
  }

  /// A short description for error messages (never recursive).
  var kind: String {
    switch self {
    case .none: "None"
    case .bool: "bool"
    case .int, .bigInt: "int"
    case .float: "float"
    case .string: "str"
    case .bytes: "bytes"
    case .tuple(let t): "tuple of \(t.items.count)"
    case .list(let l): "list of \(l.items.count)"
    case .dict(let d): d.ordered ? "OrderedDict of \(d.entries.count)" : "dict of \(d.entries.count)"
    case .global(let module, let name): "\(module).\(name)"
    case .storage: "storage"
    case .tensor: "tensor"
    case .object(let o): "\(o.type) object"
    }
  }

  var asInt: Int64? {
    if case .int(let v) = self { return v }
    return nil
  }

  var asString: String? {
    if case .string(let v) = self { return v }
    return nil
  }

  var asTuple: [PickleValue]? {
    if case .tuple(let t) = self { return t.items }
    return nil
  }
}

/// An immutable tuple with its nesting depth.
struct PickleTuple {
  let items: [PickleValue]
  let depth: Int

  init(_ items: [PickleValue]) {
    self.items = items
    self.depth = 1 + (items.map(\.depth).max() ?? 0)
  }
}

/// A mutable list. Once placed inside another container it is frozen: torch's pickler always fills a
/// container before nesting it, and refusing later mutation rules out cycles and hidden depth.
final class PickleList {
  var items: [PickleValue] = []
  var depth = 1
  var nested = false
}

/// A mutable `dict` or `OrderedDict` keeping insertion order; a repeated key replaces the value in place,
/// as Python does. Frozen once nested, like `PickleList`.
final class PickleDict {
  var entries: [(key: PickleValue, value: PickleValue)] = []
  var ordered: Bool
  var depth = 1
  var nested = false
  private var stringIndex: [String: Int] = [:]

  init(ordered: Bool) { self.ordered = ordered }

  func set(_ key: PickleValue, _ value: PickleValue) {
    if case .string(let s) = key {
      if let existing = stringIndex[s] {
        entries[existing].value = value
        return
      }
      stringIndex[s] = entries.count
    }
    entries.append((key, value))
  }

  func value(forKey key: String) -> PickleValue? {
    stringIndex[key].map { entries[$0].value }
  }
}

/// A storage named by a persistent id `("storage", class, key, location, numel[, view])`.
struct PickleStorageRef {
  /// The dtype of a typed storage class; nil for `UntypedStorage` (numel counts bytes).
  var typedDType: DType?
  var key: String
  var location: String
  var numel: Int64
}

/// An inert record of an allowlisted class: `NEWOBJ`/`REDUCE` arguments and the `BUILD` state, kept as
/// data. Frozen once nested, like `PickleList`.
final class PickleObject {
  /// `module.name` of the class.
  let type: String
  let args: [PickleValue]
  var state: PickleValue?
  var depth: Int
  var nested = false

  init(type: String, args: [PickleValue]) {
    self.type = type
    self.args = args
    self.depth = 1 + (args.map(\.depth).max() ?? 0)
  }
}
