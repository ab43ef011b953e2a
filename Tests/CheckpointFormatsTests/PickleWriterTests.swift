import Testing

@testable import CheckpointFormats

/// Builds expected pickle bytes opcode by opcode, written from the reference's section 1.4.
private struct Expected {
  var bytes: [UInt8] = []
  mutating func op(_ code: UInt8, _ args: UInt8...) { bytes += [code] + args }
  mutating func unicode(_ text: String) {
    let utf8 = Array(text.utf8)
    bytes += [0x58, UInt8(utf8.count), 0, 0, 0] + utf8
  }
  mutating func global(_ module: String, _ name: String) { bytes += [0x63] + Array("\(module)\n\(name)\n".utf8) }
  mutating func put(_ slot: UInt8) { op(0x71, slot) }
  mutating func get(_ slot: UInt8) { op(0x68, slot) }
  mutating func int1(_ value: UInt8) { op(0x4B, value) }
}

@Suite struct PickleWriterTests {
  private func entry(
    _ name: String, _ dtype: DType = .f32, shape: [Int], key: String, bytes: Int64, parameter: Bool = false,
    requiresGrad: Bool = false
  ) -> PickleWriter.TensorEntry {
    PickleWriter.TensorEntry(
      name: name, dtype: dtype, shape: shape, strides: TensorInfo.contiguousStrides(shape), storageOffset: 0,
      storageKey: key, storageByteCount: bytes, isParameter: parameter, requiresGrad: requiresGrad)
  }

  @Test func oneTensorDictMatchesTorchSave() {
    var e = Expected()
    e.op(0x80, 2)  // PROTO 2
    e.op(0x7D)  // EMPTY_DICT
    e.put(0)
    e.unicode("emb.weight")
    e.put(1)
    e.global("torch._utils", "_rebuild_tensor_v2")
    e.put(2)
    e.op(0x28)  // MARK (args)
    e.op(0x28)  // MARK (persistent id)
    e.unicode("storage")
    e.put(3)
    e.global("torch", "FloatStorage")
    e.put(4)
    e.unicode("0")
    e.put(5)
    e.unicode("cpu")
    e.put(6)
    e.int1(12)
    e.op(0x74)  // TUPLE
    e.put(7)
    e.op(0x51)  // BINPERSID
    e.int1(0)
    e.int1(3)
    e.int1(4)
    e.op(0x86)  // TUPLE2
    e.put(8)
    e.int1(4)
    e.int1(1)
    e.op(0x86)
    e.put(9)
    e.op(0x89)  // NEWFALSE
    e.global("collections", "OrderedDict")
    e.put(10)
    e.op(0x29)  // EMPTY_TUPLE
    e.op(0x52)  // REDUCE
    e.put(11)
    e.op(0x74)  // TUPLE
    e.put(12)
    e.op(0x52)  // REDUCE
    e.put(13)
    e.op(0x73)  // SETITEM (a batch of one)
    e.op(0x2E)  // STOP
    let bytes = PickleWriter.stateDict([entry("emb.weight", shape: [3, 4], key: "0", bytes: 48)])
    #expect(bytes == e.bytes)
  }

  @Test func sharedStorageAndParameterReuseMemo() {
    let bytes = PickleWriter.stateDict([
      entry("a", shape: [2], key: "0", bytes: 8),
      entry("b", shape: [2], key: "0", bytes: 8),
      entry("p", shape: [2], key: "1", bytes: 8, parameter: true, requiresGrad: true),
    ])
    // MARK ... SETITEMS for more than one item.
    #expect(bytes[5] == 0x28)
    #expect(Array(bytes.suffix(2)) == [0x75, 0x2E])
    #expect(opcodes(bytes).filter { $0 == 0x68 }.count >= 4)  // BINGETs
    // The storage key "0" is pickled once and fetched again; the globals appear once each.
    #expect(count([0x58, 1, 0, 0, 0, 0x30], in: bytes) == 1)
    #expect(count(Array("torch\nFloatStorage\n".utf8), in: bytes) == 1)
    #expect(count(Array("_rebuild_tensor_v2\n".utf8), in: bytes) == 1)
    #expect(count(Array("_rebuild_parameter\n".utf8), in: bytes) == 1)
    #expect(opcodes(bytes).filter { $0 == 0x88 }.count == 1)  // one NEWTRUE: the parameter's requires_grad
    #expect(opcodes(bytes).filter { $0 == 0x87 }.count == 1)  // TUPLE3 for (tensor, requires_grad, hooks)
  }

  @Test(arguments: [DType.u16, .u32, .u64, .f8e4m3, .f8e5m2])
  func newDtypesUseV3AndUntypedStorage(dtype: DType) {
    let bytes = PickleWriter.stateDict([entry("x", dtype, shape: [3], key: "0", bytes: Int64(3 * dtype.byteSize))])
    #expect(count(Array("_rebuild_tensor_v3\n".utf8), in: bytes) == 1)
    #expect(count(Array("torch.storage\nUntypedStorage\n".utf8), in: bytes) == 1)
    #expect(count(Array("torch\n\(dtype.torchName)\n".utf8), in: bytes) == 1)
    // numel in the persistent id is the byte count.
    #expect(count([0x4B, UInt8(3 * dtype.byteSize), 0x74], in: bytes) == 1)
  }

  @Test(
    arguments: [
      (0, [0x4B, 0x00]), (255, [0x4B, 0xFF]), (256, [0x4D, 0x00, 0x01]), (65535, [0x4D, 0xFF, 0xFF]),
      (65536, [0x4A, 0x00, 0x00, 0x01, 0x00]), (-1, [0x4A, 0xFF, 0xFF, 0xFF, 0xFF]),
      (2_147_483_647, [0x4A, 0xFF, 0xFF, 0xFF, 0x7F]), (2_147_483_648, [0x8A, 5, 0x00, 0x00, 0x00, 0x80, 0x00]),
      (1 << 40, [0x8A, 6, 0, 0, 0, 0, 0, 0x01]),
    ] as [(Int, [UInt8])])
  func integerOpcodes(value: Int, expected: [UInt8]) {
    var pickle = PickleWriter()
    pickle.int(value)
    #expect(pickle.bytes == expected)
  }

  @Test(arguments: [0, 1, 2, 3, 4, 7])
  func tupleOpcodesByLength(length: Int) {
    var pickle = PickleWriter()
    pickle.intTuple(Array(repeating: 1, count: length))
    let expectedTail: [UInt8]
    switch length {
    case 0: expectedTail = [0x29]
    case 1: expectedTail = [0x85, 0x71, 0]
    case 2: expectedTail = [0x86, 0x71, 0]
    case 3: expectedTail = [0x87, 0x71, 0]
    default: expectedTail = [0x74, 0x71, 0]
    }
    #expect(Array(pickle.bytes.suffix(expectedTail.count)) == expectedTail)
    #expect((pickle.bytes.first == 0x28) == (length > 3))
  }

  @Test func longMemoSlotsAndBatchesOfAThousand() {
    let tensors = (0..<2500).map { entry("t\($0)", shape: [1], key: String($0), bytes: 4) }
    let bytes = PickleWriter.stateDict(tensors)
    #expect(opcodes(bytes).contains(0x72))  // LONG_BINPUT once memo slots pass 255
    // 1000 + 1000 + 500: three MARK ... SETITEMS batches.
    #expect(opcodes(bytes).filter { $0 == 0x75 }.count == 3)
    #expect(bytes.last == 0x2E)
  }

  @Test func allOpcodesAreOnTheWeightsOnlyList() {
    let allowed: Set<UInt8> = [
      0x80, 0x2E, 0x28, 0x7D, 0x29, 0x74, 0x85, 0x86, 0x87, 0x88, 0x89, 0x4B, 0x4D, 0x4A, 0x8A, 0x58, 0x63,
      0x51, 0x52, 0x71, 0x72, 0x68, 0x6A, 0x73, 0x75,
    ]
    let bytes = PickleWriter.stateDict(
      DType.allCases.enumerated().map { entry("n\($0.offset)", $0.element, shape: [2, 3, 4, 5], key: "0", bytes: 960) })
    #expect(opcodes(bytes).allSatisfy { allowed.contains($0) })
  }

  /// Walks the opcode stream (only the opcodes the writer emits) and returns the opcodes.
  private func opcodes(_ bytes: [UInt8]) -> [UInt8] {
    var result: [UInt8] = []
    var index = 0
    while index < bytes.count {
      let op = bytes[index]
      result.append(op)
      index += 1
      switch op {
      case 0x80, 0x4B, 0x71, 0x68: index += 1
      case 0x4D: index += 2
      case 0x4A, 0x72, 0x6A: index += 4
      case 0x8A: index += 1 + Int(bytes[index])
      case 0x58:
        let length = Int(bytes[index]) | Int(bytes[index + 1]) << 8 | Int(bytes[index + 2]) << 16
        index += 4 + length
      case 0x63:
        var newlines = 0
        while newlines < 2 {
          if bytes[index] == 0x0A { newlines += 1 }
          index += 1
        }
      default: break
      }
    }
    return result
  }

  private func count(_ needle: [UInt8], in haystack: [UInt8]) -> Int {
    guard needle.count <= haystack.count else { return 0 }
    var found = 0
    for start in 0...(haystack.count - needle.count)
    where haystack[start..<(start + needle.count)].elementsEqual(needle) {
      found += 1
    }
    return found
  }
}
