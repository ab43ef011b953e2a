/// Emits a protocol-2 pickle using only the opcodes torch's weights-only unpickler accepts, with the
/// memo (BINPUT / BINGET) used the way CPython's pickler uses it.
///
/// Low level: each call appends opcodes. `PickleWriter+StateDict.swift` builds the state dict stream.
public struct PickleWriter: Sendable {
  /// The opcode bytes written so far.
  public private(set) var bytes: [UInt8] = []
  /// Next memo slot (CPython uses `len(memo)`).
  private var nextMemo: UInt32 = 0
  /// Memo slots of objects pickled once and fetched again (globals, shared strings).
  private var memo: [String: UInt32] = [:]

  /// The opcodes used.
  enum Op {
    static let proto: UInt8 = 0x80
    static let stop: UInt8 = 0x2E
    static let mark: UInt8 = 0x28
    static let emptyDict: UInt8 = 0x7D
    static let emptyTuple: UInt8 = 0x29
    static let tuple: UInt8 = 0x74
    static let tuple1: UInt8 = 0x85
    static let tuple2: UInt8 = 0x86
    static let tuple3: UInt8 = 0x87
    static let newTrue: UInt8 = 0x88
    static let newFalse: UInt8 = 0x89
    static let binInt1: UInt8 = 0x4B
    static let binInt2: UInt8 = 0x4D
    static let binInt: UInt8 = 0x4A
    static let long1: UInt8 = 0x8A
    static let binUnicode: UInt8 = 0x58
    static let global: UInt8 = 0x63
    static let binPersId: UInt8 = 0x51
    static let reduce: UInt8 = 0x52
    static let binPut: UInt8 = 0x71
    static let longBinPut: UInt8 = 0x72
    static let binGet: UInt8 = 0x68
    static let longBinGet: UInt8 = 0x6A
    static let setItem: UInt8 = 0x73
    static let setItems: UInt8 = 0x75
  }

  public init() {}

  /// `PROTO 2`.
  public mutating func proto() { bytes += [Op.proto, 2] }
  /// `STOP`.
  public mutating func stop() { bytes.append(Op.stop) }
  /// `MARK`.
  public mutating func mark() { bytes.append(Op.mark) }
  /// `SETITEM` (one pair) or `SETITEMS` (pairs since the mark).
  public mutating func setItem() { bytes.append(Op.setItem) }
  public mutating func setItems() { bytes.append(Op.setItems) }
  /// `REDUCE`, then the result is memoized.
  public mutating func reduce() {
    bytes.append(Op.reduce)
    put()
  }
  /// `BINPERSID` (its result is not memoized).
  public mutating func persistentID() { bytes.append(Op.binPersId) }
  /// `EMPTY_DICT`, memoized.
  public mutating func emptyDict() {
    bytes.append(Op.emptyDict)
    put()
  }
  /// `EMPTY_TUPLE` (CPython does not memoize it).
  public mutating func emptyTuple() { bytes.append(Op.emptyTuple) }

  /// Builds a tuple from the last `count` items pushed (after a `mark()` when count > 3), memoized.
  /// Length 0 to 3 use EMPTY_TUPLE / TUPLE1..3; longer tuples MARK ... TUPLE.
  public mutating func tuple(count: Int) {
    switch count {
    case 0:
      emptyTuple()
      return
    case 1: bytes.append(Op.tuple1)
    case 2: bytes.append(Op.tuple2)
    case 3: bytes.append(Op.tuple3)
    default: bytes.append(Op.tuple)
    }
    put()
  }

  /// Pushes a tuple of ints (sizes, strides) the way CPython saves it.
  public mutating func intTuple(_ values: [Int]) {
    if values.count > 3 { mark() }
    for value in values { int(value) }
    tuple(count: values.count)
  }

  /// `NEWTRUE` / `NEWFALSE`.
  public mutating func bool(_ value: Bool) { bytes.append(value ? Op.newTrue : Op.newFalse) }

  /// An int with the smallest opcode CPython picks: BININT1, BININT2, BININT or LONG1.
  public mutating func int(_ value: Int) {
    if value >= 0 && value <= 0xFF {
      bytes += [Op.binInt1, UInt8(value)]
    } else if value >= 0 && value <= 0xFFFF {
      bytes += [Op.binInt2, UInt8(value & 0xFF), UInt8(value >> 8)]
    } else if value >= Int(Int32.min) && value <= Int(Int32.max) {
      bytes.append(Op.binInt)
      let bits = UInt32(bitPattern: Int32(value))
      for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: bits >> UInt32(shift))) }
    } else {
      let encoded = PickleWriter.encodeLong(value)
      bytes += [Op.long1, UInt8(encoded.count)]
      bytes += encoded
    }
  }

  /// CPython's `encode_long`: minimal two's complement, little endian.
  static func encodeLong(_ value: Int) -> [UInt8] {
    if value == 0 { return [] }
    // Python's int.bit_length() counts the bits of the magnitude.
    let bitLength = UInt.bitWidth - value.magnitude.leadingZeroBitCount
    let count = (bitLength >> 3) + 1
    var result: [UInt8] = []
    for index in 0..<count { result.append(UInt8(truncatingIfNeeded: value >> (8 * index))) }
    if value < 0 && result.count > 1 && result[result.count - 1] == 0xFF && (result[result.count - 2] & 0x80) != 0 {
      result.removeLast()
    }
    return result
  }

  /// A fresh string: BINUNICODE, memoized (never fetched again).
  public mutating func string(_ value: String) {
    let utf8 = Array(value.utf8)
    bytes.append(Op.binUnicode)
    let count = UInt32(utf8.count)
    for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: count >> UInt32(shift))) }
    bytes += utf8
    put()
  }

  /// A string that is one shared object in torch's pickler ('storage', 'cpu', storage keys): the
  /// first time BINUNICODE + BINPUT, afterwards BINGET.
  public mutating func sharedString(_ value: String) {
    let key = "s:" + value
    if let slot = memo[key] {
      get(slot)
      return
    }
    memo[key] = nextMemo
    string(value)
  }

  /// `GLOBAL module\nname\n`, memoized, fetched with BINGET when repeated.
  public mutating func global(_ module: String, _ name: String) {
    let key = "g:" + module + "\n" + name
    if let slot = memo[key] {
      get(slot)
      return
    }
    memo[key] = nextMemo
    bytes.append(Op.global)
    bytes += Array(module.utf8) + [0x0A] + Array(name.utf8) + [0x0A]
    put()
  }

  /// Memoizes the top of the stack in the next slot (BINPUT below 256, LONG_BINPUT above).
  mutating func put() {
    let slot = nextMemo
    nextMemo += 1
    if slot < 256 {
      bytes += [Op.binPut, UInt8(slot)]
    } else {
      bytes.append(Op.longBinPut)
      for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: slot >> UInt32(shift))) }
    }
  }

  /// Pushes a memoized object (BINGET below 256, LONG_BINGET above).
  mutating func get(_ slot: UInt32) {
    if slot < 256 {
      bytes += [Op.binGet, UInt8(slot)]
    } else {
      bytes.append(Op.longBinGet)
      for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: slot >> UInt32(shift))) }
    }
  }
}
