extension PickleMachine {
  /// Names of opcodes the machine refuses, for error messages.
  static let refusedOpcodeNames: [UInt8: String] = [
    0x69: "INST", 0x6F: "OBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x50: "PERSID", 0x49: "INT",
    0x4C: "LONG", 0x53: "STRING", 0x56: "UNICODE", 0x46: "FLOAT", 0x64: "DICT", 0x6C: "LIST", 0x30: "POP",
    0x31: "POP_MARK", 0x32: "DUP", 0x67: "GET", 0x70: "PUT", 0x8B: "LONG4", 0x8D: "BINUNICODE8",
    0x8E: "BINBYTES8", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x96: "BYTEARRAY8",
    0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
  ]

  /// Executes one opcode (everything but STOP).
  func execute(_ opcode: UInt8) throws {
    switch opcode {
    case 0x80:  // PROTO
      let version = try input.byte()
      guard version <= 5 else { throw fail(.unsupported, "pickle protocol \(version) is not supported") }
    case 0x95:  // FRAME (protocol 4): a length hint only
      _ = try input.uint(8)
    case 0x28: try mark()  // MARK
    case 0x4E: push(.none)  // NONE
    case 0x88: push(.bool(true))  // NEWTRUE
    case 0x89: push(.bool(false))  // NEWFALSE
    case 0x4B: push(.int(Int64(try input.byte())))  // BININT1
    case 0x4D: push(.int(Int64(try input.uint(2))))  // BININT2
    case 0x4A: push(.int(Int64(Int32(truncatingIfNeeded: try input.uint(4)))))  // BININT
    case 0x8A: try long1()
    case 0x47:  // BINFLOAT, big-endian
      let raw = try input.uint(8)
      push(.float(Double(bitPattern: raw.byteSwapped)))
    case 0x58: try pushString(length: Int(try input.uint(4)), opcode: "BINUNICODE")
    case 0x8C: try pushString(length: Int(try input.byte()), opcode: "SHORT_BINUNICODE")
    case 0x55: try pushString(length: Int(try input.byte()), opcode: "SHORT_BINSTRING")
    case 0x54:  // BINSTRING: signed 32-bit length
      let length = Int32(truncatingIfNeeded: try input.uint(4))
      guard length >= 0 else { throw fail(.invalidFormat, "pickle BINSTRING with negative length") }
      try pushString(length: Int(length), opcode: "BINSTRING")
    case 0x43: push(.bytes(Array(try input.bytes(Int(try input.byte())))))  // SHORT_BINBYTES
    case 0x42: push(.bytes(Array(try input.bytes(Int(try input.uint(4))))))  // BINBYTES
    case 0x29:  // EMPTY_TUPLE
      let made = try tuple([])
      push(made)
    case 0x85:  // TUPLE1
      let a = try pop()
      let made = try tuple([a])
      push(made)
    case 0x86:  // TUPLE2
      let b = try pop()
      let a = try pop()
      let made = try tuple([a, b])
      push(made)
    case 0x87:  // TUPLE3
      let c = try pop()
      let b = try pop()
      let a = try pop()
      let made = try tuple([a, b, c])
      push(made)
    case 0x74:  // TUPLE
      let items = try popToMark()
      let made = try tuple(items)
      push(made)
    case 0x5D, 0x8F: push(.list(PickleList()))  // EMPTY_LIST, EMPTY_SET
    case 0x7D: push(.dict(PickleDict(ordered: false)))  // EMPTY_DICT
    case 0x61: try append([try pop()])  // APPEND
    case 0x65: try append(try popToMark())  // APPENDS
    case 0x73:  // SETITEM
      let value = try pop()
      let key = try pop()
      try setItems([key, value])
    case 0x75: try setItems(try popToMark())  // SETITEMS
    case 0x71: try memoPut(Int(try input.byte()))  // BINPUT
    case 0x72: try memoPut(Int(try input.uint(4)))  // LONG_BINPUT
    case 0x94: try memoPut(memo.count + sparseMemo.count)  // MEMOIZE
    case 0x68, 0x6A:  // BINGET, LONG_BINGET
      let index = Int(opcode == 0x68 ? UInt64(try input.byte()) : try input.uint(4))
      let value = try memoGet(index)
      push(value)
    case 0x63:  // GLOBAL
      guard let module = try input.line(), let name = try input.line() else {
        throw fail(.invalidFormat, "pickle GLOBAL at byte \(opcodeStart) has an unreadable name")
      }
      push(try resolveGlobal(module: module, name: name))
    case 0x93:  // STACK_GLOBAL
      let name = try pop()
      let module = try pop()
      guard let moduleName = module.asString, let attribute = name.asString else {
        throw fail(.invalidFormat, "pickle STACK_GLOBAL at byte \(opcodeStart) needs two strings")
      }
      push(try resolveGlobal(module: moduleName, name: attribute))
    case 0x52:  // REDUCE
      let args = try pop()
      let callable = try pop()
      push(try reduce(callable, args))
    case 0x81:  // NEWOBJ
      let args = try pop()
      let cls = try pop()
      push(try newObject(cls, args))
    case 0x62:  // BUILD
      let state = try pop()
      try build(state)
    case 0x51:  // BINPERSID
      push(try persistentLoad(try pop()))
    default:
      let name = PickleMachine.refusedOpcodeNames[opcode] ?? "unknown"
      let hex = String(opcode, radix: 16, uppercase: true)
      throw fail(
        .forbidden, "refuses opcode 0x\(hex.count < 2 ? "0" + hex : hex) (\(name)) at byte \(opcodeStart)")
    }
  }

  /// LONG1: a little-endian two's complement integer of up to 255 bytes.
  func long1() throws {
    let count = Int(try input.byte())
    let raw = Array(try input.bytes(count))
    guard count <= 8 else {
      push(.bigInt(raw))
      return
    }
    guard count > 0 else {
      push(.int(0))
      return
    }
    var value: UInt64 = 0
    for (shift, byte) in raw.enumerated() { value |= UInt64(byte) << (8 * UInt64(shift)) }
    let unused = UInt64(64 - 8 * count)
    // Sign-extend from the top byte.
    let signed = unused == 0 ? Int64(bitPattern: value) : Int64(bitPattern: value << unused) >> Int64(unused)
    push(.int(signed))
  }

  func pushString(length: Int, opcode: String) throws {
    let raw = try input.bytes(length)
    guard let text = String(validating: raw, as: UTF8.self) else {
      throw fail(.invalidFormat, "pickle \(opcode) at byte \(opcodeStart) is not valid UTF-8")
    }
    push(.string(text))
  }

  /// BUILD: only the state of an (Ordered)dict is accepted, and ignored (`_metadata`).
  func build(_ state: PickleValue) throws {
    let target = try top()
    if case .object(let record) = target {
      try buildRecord(record, state)
      return
    }
    guard case .dict = target else {
      throw fail(.forbidden, "refuses BUILD on \(target.kind) at byte \(opcodeStart)")
    }
    _ = try depthAfterAdding(state, to: 1)
    adopt(state)
  }
}
