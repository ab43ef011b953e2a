import Foundation
import Testing

@testable import CheckpointFormats

@Suite struct PickleMachineTests {
  /// Reads `pickle` as the data.pkl of a torch zip with one 12-float record "0".
  func read(_ pickle: [UInt8], limits: TorchReader.Limits = .init()) throws -> StateDict {
    let folder = try FixtureFolder()
    let bytes = torchZip(pickle: pickle, records: [("0", float32Bytes((0..<12).map(Float.init)))]).bytes
    let path = try folder.write("model.bin", bytes)
    return try withExtendedLifetime(folder) { try TorchReader.read(path: path, limits: limits) }
  }

  func expectError(
    _ code: CheckpointError.Code, _ text: String, _ pickle: [UInt8], limits: TorchReader.Limits = .init()
  ) {
    do {
      _ = try read(pickle, limits: limits)
      Issue.record("expected \(code) containing '\(text)'")
    } catch let error as CheckpointError {
      #expect(error.code == code, "\(error)")
      #expect(error.message.contains(text), "\(error)")
    } catch {
      Issue.record("unexpected error \(error)")
    }
  }

  func tensorPickle(_ t: FixtureTensor) -> [UInt8] { PickleEmitter.stateDict([t]) }

  @Test(arguments: [("posix", "system"), ("os", "system"), ("builtins", "eval"), ("subprocess", "Popen")])
  func refusesDangerousGlobalsWithoutRunningThem(module: String, name: String) throws {
    let marker = FileManager.default.temporaryDirectory.appendingPathComponent("ckptd-pwned-\(UUID().uuidString)")
    var p = PickleEmitter()
    p.global(module, name)
    p.mark()
    p.string("touch \(marker.path)")
    p.tuple()
    p.reduce()
    p.stop()
    expectError(.forbidden, "refuses global \(module).\(name)", p.bytes)
    #expect(!FileManager.default.fileExists(atPath: marker.path))
  }

  @Test func refusesGlobalViaStackGlobal() {
    var p = PickleEmitter()
    p.string("posix")
    p.string("system")
    p.op(0x93)
    p.stop()
    expectError(.forbidden, "refuses global posix.system", p.bytes)
  }

  @Test(arguments: [(UInt8(0xFF), "0xFF (unknown)"), (0x69, "0x69 (INST)"), (0x32, "0x32 (DUP)"), (0x6F, "0x6F (OBJ)")])
  func refusesOpcodes(opcode: UInt8, text: String) {
    var p = PickleEmitter()
    p.op(0x4E)
    p.op(opcode)
    p.stop()
    expectError(.forbidden, "refuses opcode \(text) at byte 3", p.bytes)
  }

  @Test func refusesCallingAllowedNonCallables() {
    var p = PickleEmitter()
    p.global("torch", "FloatStorage")
    p.emptyTuple()
    p.reduce()
    p.stop()
    expectError(.forbidden, "refuses to call torch.FloatStorage", p.bytes)
  }

  @Test func refusesBuildOnNonDict() {
    var p = PickleEmitter()
    p.op(0x5D)
    p.op(0x4E)
    p.op(0x62)
    p.stop()
    expectError(.forbidden, "refuses BUILD", p.bytes)
  }

  @Test func refusesDeepNestedLists() {
    var p = PickleEmitter()
    for _ in 0..<500 { p.op(0x5D) }
    for _ in 0..<499 { p.op(0x61) }
    p.stop()
    expectError(.limitExceeded, "deeper than", p.bytes)
  }

  @Test func refusesDeepNestedTuples() {
    var p = PickleEmitter()
    p.emptyTuple()
    for _ in 0..<500 { p.op(0x85) }
    p.stop()
    expectError(.limitExceeded, "deeper than", p.bytes)
  }

  @Test func refusesMarkBomb() {
    var p = PickleEmitter()
    for _ in 0..<100_000 { p.mark() }
    p.stop()
    expectError(.limitExceeded, "MARK", p.bytes)
  }

  @Test func refusesMemoExplosion() {
    var limits = TorchReader.Limits()
    limits.maxMemo = 1000
    var p = PickleEmitter()
    p.op(0x4E)
    for i in 0..<5000 {
      p.op(0x72)
      p.le(UInt64(i) * 7919, 4)
    }
    p.stop()
    expectError(.limitExceeded, "memo", p.bytes, limits: limits)
  }

  @Test func refusesStackFlood() {
    var limits = TorchReader.Limits()
    limits.maxStack = 1000
    var p = PickleEmitter()
    for _ in 0..<5000 { p.op(0x4E) }
    p.stop()
    expectError(.limitExceeded, "stack", p.bytes, limits: limits)
  }

  @Test func refusesOversizedPickle() {
    var limits = TorchReader.Limits()
    limits.maxPickleBytes = 100
    let pickle = tensorPickle(FixtureTensor("w", key: "0", storageNumel: 12, shape: [12]))
    expectError(.limitExceeded, "limit", pickle, limits: limits)
  }

  @Test func refusesHugeStringLength() {
    var p = PickleEmitter()
    p.op(0x58)
    p.le(0xFFFF_FFF0, 4)
    p.stop()
    expectError(.truncated, "without STOP", p.bytes)
  }

  @Test func refusesPickleWithoutStop() {
    var p = PickleEmitter()
    p.op(0x7D)
    expectError(.truncated, "without STOP", p.bytes)
  }

  @Test func refusesTooManyTensors() {
    var limits = TorchReader.Limits()
    limits.maxTensors = 2
    let tensors = (0..<3).map { FixtureTensor("t\($0)", key: "0", storageNumel: 12, shape: [2]) }
    expectError(.limitExceeded, "more than 2 tensors", PickleEmitter.stateDict(tensors), limits: limits)
  }

  @Test func refusesRankAboveLimit() {
    let shape = [Int64](repeating: 1, count: 65)
    expectError(.limitExceeded, "rank 65", tensorPickle(FixtureTensor("w", key: "0", storageNumel: 12, shape: shape)))
  }

  @Test func refusesNegativeSize() {
    let t = FixtureTensor("w", key: "0", storageNumel: 12, shape: [-1], strides: [1])
    expectError(.invalidFormat, "not a size", tensorPickle(t))
  }

  @Test func refusesNegativeStorageNumel() {
    let t = FixtureTensor("w", key: "0", storageNumel: -12, shape: [2])
    expectError(.invalidFormat, "negative size", tensorPickle(t))
  }

  @Test func refusesOverflowingStrides() {
    let t = FixtureTensor("w", key: "0", storageNumel: 12, shape: [4, 4], strides: [Int64.max / 2, 1])
    expectError(.limitExceeded, "overflows", tensorPickle(t))
  }

  @Test func refusesExtentPastStorage() {
    let t = FixtureTensor("w", key: "0", storageNumel: 12, offset: 4, shape: [3, 4])
    expectError(.invalidFormat, "reaches byte 64 of storage '0' (48 bytes)", tensorPickle(t))
  }

  @Test func refusesInconsistentStorageDescriptions() {
    let tensors = [
      FixtureTensor("a", key: "0", storageNumel: 12, shape: [2]),
      FixtureTensor("b", key: "0", storageNumel: 6, shape: [2]),
    ]
    expectError(.invalidFormat, "inconsistently", PickleEmitter.stateDict(tensors))
  }

  @Test func refusesNonStoragePersistentId() {
    var p = PickleEmitter()
    p.string("evil")
    p.op(0x51)
    p.stop()
    expectError(.forbidden, "persistent id", p.bytes)
  }

  @Test func refusesMutationAfterNesting() {
    var p = PickleEmitter()
    p.op(0x5D)  // outer
    p.op(0x5D)  // inner
    p.put(0)
    p.op(0x61)  // outer.append(inner)
    p.get(0)
    p.op(0x5D)
    p.op(0x61)  // inner.append([]) after nesting
    p.stop()
    expectError(.unsupported, "after nesting", p.bytes)
  }

  @Test func machineHandlesIntegersAndStrings() throws {
    var p = PickleEmitter()
    p.mark()
    for v: Int64 in [0, 255, 256, 65_535, 65_536, -1, Int64(Int32.min), 1 << 40, -(1 << 40)] { p.int(v) }
    p.raw([0x8C, 2] + Array("hi".utf8))  // SHORT_BINUNICODE
    p.raw([0x55, 1, 0x41])  // SHORT_BINSTRING
    p.raw([0x47, 0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18])  // BINFLOAT pi
    p.tuple()
    p.stop()
    let folder = try FixtureFolder()
    let path = try folder.write("p.pkl", p.bytes)
    let file = try ReadableFile(path: path)
    var machine = PickleMachine(
      input: PickleInput(file: file, start: 0, end: file.size, cap: 1 << 20), limits: .init())
    let items = try #require(try machine.run().asTuple)
    #expect(items.compactMap(\.asInt) == [0, 255, 256, 65_535, 65_536, -1, Int64(Int32.min), 1 << 40, -(1 << 40)])
    #expect(items[9].asString == "hi" && items[10].asString == "A")
    guard case .float(let pi) = items[11] else {
      Issue.record("expected a float")
      return
    }
    #expect(pi == Double.pi)
  }
}
