/// A restricted pickle virtual machine for `torch.save` state dicts.
///
/// It accepts the opcodes torch's weights-only unpickler accepts (plus a few protocol-4 ones that carry
/// only data), resolves `GLOBAL` only against a fixed allowlist, and applies `REDUCE` symbolically to
/// the few callables a state dict needs, building `TensorInfo` descriptors. Nothing is ever imported,
/// called or executed. Every bound (size, depth, stack, memo, tensors, rank) is enforced.
final class PickleMachine {
  var input: PickleInput
  let limits: TorchReader.Limits
  var path: String { input.file.path }

  var stack: [PickleValue] = []
  var marks: [Int] = []
  var memo: [PickleValue] = []
  var sparseMemo: [Int: PickleValue] = [:]

  /// Storages met through persistent ids, by key, and the order they were first met in.
  var storages: [String: PickleStorageRef] = [:]
  var storageOrder: [String] = []
  /// The element type each storage is viewed with (for `UntypedStorage`, from `_rebuild_tensor_v3`).
  var storageDTypes: [String: DType] = [:]
  /// Tensors built so far, across every pickle this machine has run.
  var tensorCount = 0
  /// Where the current opcode started, relative to the pickle's start.
  var opcodeStart: Int64 = 0
  /// Also accept the globals of DeepSpeed ZeRO and torch DCP files, as inert records
  /// (`PickleMachine+Globals.swift`).
  var distributedGlobals = false

  init(input: PickleInput, limits: TorchReader.Limits) {
    self.input = input
    self.limits = limits
  }

  func fail(_ code: CheckpointError.Code, _ message: String) -> CheckpointError {
    CheckpointError(code, path: path, message)
  }

  /// Runs one pickle from the current input position to its `STOP` and returns the result.
  func run() throws -> PickleValue {
    stack.removeAll()
    marks.removeAll()
    memo.removeAll()
    sparseMemo.removeAll()
    while true {
      opcodeStart = input.relativePosition
      let opcode = try input.byte()
      if opcode == 0x2E {  // STOP
        guard stack.count == 1, marks.isEmpty, let result = stack.popLast() else {
          throw fail(.invalidFormat, "pickle STOP at byte \(opcodeStart) with \(stack.count) values on the stack")
        }
        return result
      }
      try execute(opcode)
      guard stack.count <= limits.maxStack else {
        throw fail(.limitExceeded, "pickle stack exceeds \(limits.maxStack) values")
      }
    }
  }

  // MARK: - Stack helpers

  func push(_ value: PickleValue) {
    stack.append(value)
  }

  func pop() throws -> PickleValue {
    if let floor = marks.last, stack.count <= floor {
      throw fail(.invalidFormat, "pickle pops across a MARK at byte \(opcodeStart)")
    }
    guard let value = stack.popLast() else {
      throw fail(.invalidFormat, "pickle stack underflow at byte \(opcodeStart)")
    }
    return value
  }

  func top() throws -> PickleValue {
    if let floor = marks.last, stack.count <= floor {
      throw fail(.invalidFormat, "pickle reads across a MARK at byte \(opcodeStart)")
    }
    guard let value = stack.last else {
      throw fail(.invalidFormat, "pickle stack underflow at byte \(opcodeStart)")
    }
    return value
  }

  /// Pops everything down to the last MARK, and the MARK.
  func popToMark() throws -> [PickleValue] {
    guard let floor = marks.popLast() else {
      throw fail(.invalidFormat, "pickle has no MARK for the opcode at byte \(opcodeStart)")
    }
    let items = Array(stack[floor...])
    stack.removeSubrange(floor...)
    return items
  }

  func mark() throws {
    guard marks.count < limits.maxDepth else {
      throw fail(.limitExceeded, "pickle nests MARKs deeper than \(limits.maxDepth)")
    }
    marks.append(stack.count)
  }

  // MARK: - Containers

  /// Makes a tuple, enforcing the depth bound and freezing nested containers.
  func tuple(_ items: [PickleValue]) throws -> PickleValue {
    let made = PickleTuple(items)
    guard made.depth <= limits.maxDepth else {
      throw fail(.limitExceeded, "pickle nests containers deeper than \(limits.maxDepth)")
    }
    for item in items { adopt(item) }
    return .tuple(made)
  }

  /// Marks a container as nested: from now on it may not change.
  func adopt(_ value: PickleValue) {
    switch value {
    case .list(let l): l.nested = true
    case .dict(let d): d.nested = true
    case .object(let o): o.nested = true
    default: break
    }
  }

  /// Checks that `child` may go into a container now `depth` deep, and returns the new depth.
  func depthAfterAdding(_ child: PickleValue, to depth: Int) throws -> Int {
    let newDepth = Swift.max(depth, child.depth + 1)
    guard newDepth <= limits.maxDepth else {
      throw fail(.limitExceeded, "pickle nests containers deeper than \(limits.maxDepth)")
    }
    return newDepth
  }

  func checkMutable(_ nested: Bool, _ what: String) throws {
    guard !nested else {
      throw fail(.unsupported, "pickle changes a \(what) after nesting it (byte \(opcodeStart))")
    }
  }

  func append(_ items: [PickleValue]) throws {
    let target = try top()
    guard case .list(let list) = target else {
      throw fail(.forbidden, "refuses APPEND to \(target.kind) at byte \(opcodeStart)")
    }
    try checkMutable(list.nested, "list")
    for item in items {
      if case .list(let l) = item, l === list { throw fail(.unsupported, "pickle puts a list inside itself") }
      list.depth = try depthAfterAdding(item, to: list.depth)
      adopt(item)
      list.items.append(item)
    }
  }

  func setItems(_ items: [PickleValue]) throws {
    guard items.count % 2 == 0 else {
      throw fail(.invalidFormat, "pickle SETITEMS at byte \(opcodeStart) has an odd number of values")
    }
    let target = try top()
    guard case .dict(let dict) = target else {
      throw fail(.forbidden, "refuses SETITEM on \(target.kind) at byte \(opcodeStart)")
    }
    try checkMutable(dict.nested, "dict")
    var index = 0
    while index < items.count {
      let key = items[index]
      let value = items[index + 1]
      for item in [key, value] {
        if case .dict(let d) = item, d === dict { throw fail(.unsupported, "pickle puts a dict inside itself") }
        dict.depth = try depthAfterAdding(item, to: dict.depth)
        adopt(item)
      }
      dict.set(key, value)
      index += 2
    }
  }

  // MARK: - Memo

  func memoPut(_ index: Int) throws {
    let value = try top()
    if index < memo.count {
      memo[index] = value
    } else if index == memo.count && sparseMemo.isEmpty {
      memo.append(value)
    } else {
      sparseMemo[index] = value
    }
    guard memo.count + sparseMemo.count <= limits.maxMemo else {
      throw fail(.limitExceeded, "pickle memo exceeds \(limits.maxMemo) entries")
    }
  }

  func memoGet(_ index: Int) throws -> PickleValue {
    if index < memo.count { return memo[index] }
    guard let value = sparseMemo[index] else {
      throw fail(.invalidFormat, "pickle reads memo entry \(index) that was never stored (byte \(opcodeStart))")
    }
    return value
  }
}
