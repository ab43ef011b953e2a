import Foundation
import Testing

@testable import CheckpointFormats

@Suite struct TorchReaderTests {
  static let twelve = float32Bytes((0..<12).map(Float.init))

  func read(_ bytes: [UInt8], limits: TorchReader.Limits = .init()) throws -> StateDict {
    let folder = try FixtureFolder()
    let path = try folder.write("pytorch_model.bin", bytes)
    return try withExtendedLifetime(folder) { try TorchReader.read(path: path, limits: limits) }
  }

  @Test(arguments: [PickleEmitter.Container.dict, .orderedDict, .wrapped])
  func readsContainers(container: PickleEmitter.Container) throws {
    let pickle = PickleEmitter.stateDict(
      [FixtureTensor("w", key: "0", storageNumel: 12, shape: [3, 4])], container: container)
    let state = try read(torchZip(pickle: pickle, records: [("0", Self.twelve)]).bytes)
    #expect(state.formatDetail == "torch zip")
    #expect(state.format == .torch)
    let tensor = try #require(state.tensors.first)
    #expect(state.tensors.count == 1)
    #expect(tensor.name == "w")
    #expect(tensor.dtype == .f32)
    #expect(tensor.shape == [3, 4])
    #expect(tensor.strides == [4, 1])
    #expect(state.storages["0"]?.byteCount == 48)
    #expect(try tensorBytes(state, "w") == Self.twelve)
  }

  @Test func readsViewsSharedStorageAndParameters() throws {
    let tensors = [
      FixtureTensor("a", key: "0", storageNumel: 12, shape: [3, 4]),
      FixtureTensor("a_t", key: "0", storageNumel: 12, shape: [4, 3], strides: [1, 4]),
      FixtureTensor("slice", key: "0", storageNumel: 12, offset: 6, shape: [2, 2], strides: [4, 1]),
      FixtureTensor("expanded", key: "0", storageNumel: 12, offset: 1, shape: [2, 3], strides: [0, 1]),
      FixtureTensor(
        "p", dtype: .bf16, key: "1", storageNumel: 2, shape: [2], requiresGrad: true, isParameter: true),
      FixtureTensor("scalar", key: "2", storageNumel: 1, shape: []),
      FixtureTensor("empty", key: "3", storageNumel: 0, shape: [0, 5]),
    ]
    let pickle = PickleEmitter.stateDict(tensors, container: .orderedDict)
    let records = [("0", Self.twelve), ("1", [0x80, 0x3F, 0x80, 0x3F]), ("2", float32Bytes([3.5])), ("3", [])]
    let state = try read(torchZip(pickle: pickle, records: records).bytes)
    #expect(state.tensors.map(\.name) == ["a", "a_t", "slice", "expanded", "p", "scalar", "empty"])
    #expect(state.storages.count == 4)
    #expect(state.tensors[0].storageKey == state.tensors[1].storageKey)
    #expect(try tensorBytes(state, "a_t") == float32Bytes([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]))
    #expect(try tensorBytes(state, "slice") == float32Bytes([6, 7, 10, 11]))
    #expect(try tensorBytes(state, "expanded") == float32Bytes([1, 2, 3, 1, 2, 3]))
    let parameter = state.tensors[4]
    #expect(parameter.isParameter && parameter.requiresGrad && parameter.dtype == .bf16)
    #expect(state.tensors[5].shape == [])
    #expect(try tensorBytes(state, "scalar") == float32Bytes([3.5]))
    #expect(state.tensors[6].shape == [0, 5])
    #expect(try tensorBytes(state, "empty").isEmpty)
  }

  @Test(arguments: [DType.u16, .u32, .u64, .f8e4m3, .f8e5m2])
  func readsUntypedStoragesThroughV3(dtype: DType) throws {
    let data = [UInt8](repeating: 7, count: 3 * dtype.byteSize)
    let pickle = PickleEmitter.stateDict([FixtureTensor("x", dtype: dtype, key: "0", storageNumel: 3, shape: [3])])
    let state = try read(torchZip(pickle: pickle, records: [("0", data)]).bytes)
    #expect(state.tensors.first?.dtype == dtype)
    #expect(state.storages["0"]?.dtype == dtype)
    #expect(state.storages["0"]?.byteCount == Int64(data.count))
    #expect(try tensorBytes(state, "x") == data)
  }

  @Test func readsLegacyFormat() throws {
    let tensors = [
      FixtureTensor("a", key: "94154414682928", storageNumel: 12, shape: [3, 4]),
      FixtureTensor("b", key: "94154414682928", storageNumel: 12, shape: [4, 3], strides: [1, 4]),
      FixtureTensor("c", dtype: .u16, key: "94154414683184", storageNumel: 3, shape: [3]),
    ]
    let u16: [UInt8] = [1, 0, 2, 0, 3, 0]
    let bytes = legacyFile(
      tensors, storages: [("94154414682928", 12, Self.twelve), ("94154414683184", 6, u16)])
    let state = try read(bytes)
    #expect(state.formatDetail == "torch legacy")
    #expect(state.tensors.map(\.name) == ["a", "b", "c"])
    #expect(try tensorBytes(state, "a") == Self.twelve)
    #expect(try tensorBytes(state, "b") == float32Bytes([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]))
    #expect(try tensorBytes(state, "c") == u16)
  }

  @Test func refusesLegacyStorageWithWrongSize() throws {
    let bytes = legacyFile(
      [FixtureTensor("a", key: "1", storageNumel: 12, shape: [12])], storages: [("1", 11, Self.twelve)])
    #expect(throws: CheckpointError.self) { try read(bytes) }
  }

  @Test func refusesLegacyStoragePastEndOfFile() throws {
    var bytes = legacyFile(
      [FixtureTensor("a", key: "1", storageNumel: 12, shape: [12])], storages: [("1", 12, Self.twelve)])
    bytes.removeLast(4)
    let error = try #require(throws: CheckpointError.self) { try read(bytes) }
    #expect(error.code == .truncated)
  }

  @Test func refusesBigEndianByteOrder() throws {
    let pickle = PickleEmitter.stateDict([FixtureTensor("w", key: "0", storageNumel: 12, shape: [12])])
    let bytes = torchZip(pickle: pickle, records: [("0", Self.twelve)], byteorder: "big").bytes
    let error = try #require(throws: CheckpointError.self) { try read(bytes) }
    #expect(error.code == .unsupported && error.message.contains("big-endian"))
  }

  @Test func refusesMissingAndShortRecords() throws {
    let pickle = PickleEmitter.stateDict([FixtureTensor("w", key: "0", storageNumel: 12, shape: [12])])
    let missing = try #require(throws: CheckpointError.self) {
      try read(torchZip(pickle: pickle, records: [("1", Self.twelve)]).bytes)
    }
    #expect(missing.code == .invalidFormat && missing.message.contains("data/0"))
    let short = try #require(throws: CheckpointError.self) {
      try read(torchZip(pickle: pickle, records: [("0", Array(Self.twelve.prefix(40)))]).bytes)
    }
    #expect(short.code == .truncated)
  }

  @Test func refusesTarAndGarbage() throws {
    var tar = [UInt8](repeating: 0, count: 1024)
    tar.replaceSubrange(257..<262, with: Array("ustar".utf8))
    let tarError = try #require(throws: CheckpointError.self) { try read(tar) }
    #expect(tarError.code == .unsupported && tarError.message.contains("tar"))
    let junk = try #require(throws: CheckpointError.self) { try read(Array("hello world".utf8)) }
    #expect(junk.code == .invalidFormat)
  }

  @Test func refusesPickleThatIsNotAStateDict() throws {
    var p = PickleEmitter()
    p.op(0x5D)  // []
    p.stop()
    let error = try #require(throws: CheckpointError.self) {
      try read(torchZip(pickle: p.bytes, records: []).bytes)
    }
    #expect(error.code == .unsupported && error.message.contains("not a state dict of tensors"))
  }

  @Test func refusesOptimizerLikeNestedDict() throws {
    var p = PickleEmitter()
    p.op(0x7D)
    p.string("state")
    p.op(0x7D)
    p.int(0)
    p.op(0x7D)
    p.raw([0x73, 0x73])  // SETITEM x2
    p.stop()
    let error = try #require(throws: CheckpointError.self) {
      try read(torchZip(pickle: p.bytes, records: []).bytes)
    }
    #expect(error.code == .unsupported && error.message.contains("'state'"))
  }

  /// Files written by the real torch, when the project's Python environment exists.
  @Test(.enabled(if: FileManager.default.fileExists(atPath: realPython)))
  func readsFilesWrittenByRealTorch() throws {
    let folder = try FixtureFolder()
    let script = """
      import torch, collections, sys, json
      t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
      sd = collections.OrderedDict(a=t, b=t.t(), c=torch.tensor([1, 2, 3], dtype=torch.uint16),
          d=torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16)), e=torch.zeros(2, dtype=torch.float8_e4m3fn),
          f=torch.tensor(3.5), g=torch.zeros(0, 5), h=t[1:, 2:])
      torch.save(sd, sys.argv[1] + '/zip.bin')
      torch.save(sd, sys.argv[1] + '/legacy.bin', _use_new_zipfile_serialization=False)
      out = {k: v.detach().contiguous().reshape(-1).view(torch.uint8).tolist() if v.numel() else [] for k, v in sd.items()}
      json.dump(out, open(sys.argv[1] + '/expected.json', 'w'))
      """
    let process = Process()
    process.executableURL = URL(fileURLWithPath: realPython)
    process.arguments = ["-c", script, folder.url.path]
    try process.run()
    process.waitUntilExit()
    try #require(process.terminationStatus == 0)
    let json = try Data(contentsOf: folder.url.appendingPathComponent("expected.json"))
    let expected = try JSONDecoder().decode([String: [UInt8]].self, from: json)
    for (file, detail) in [("zip.bin", "torch zip"), ("legacy.bin", "torch legacy")] {
      let state = try TorchReader.read(path: folder.url.appendingPathComponent(file).path)
      #expect(state.formatDetail == detail)
      #expect(state.tensors.map(\.name) == ["a", "b", "c", "d", "e", "f", "g", "h"])
      for tensor in state.tensors {
        #expect(try tensorBytes(state, tensor.name) == expected[tensor.name], "\(file) \(tensor.name)")
      }
      #expect(state.tensors[3].isParameter && state.tensors[3].requiresGrad)
      #expect(state.tensors[0].storageKey == state.tensors[1].storageKey)
    }
  }
}

let realPython = "/root/.cache/ckptd/venv/bin/python"

/// A legacy-format file: magic, protocol, sys_info, the object, the key list, then each storage.
func legacyFile(_ tensors: [FixtureTensor], storages: [(key: String, numel: Int64, data: [UInt8])]) -> [UInt8] {
  var magic = PickleEmitter()
  magic.raw([0x8A, 10] + TorchLegacyReader.magicNumber)
  magic.stop()
  var version = PickleEmitter()
  version.int(1001)
  version.stop()
  var sysInfo = PickleEmitter()
  sysInfo.op(0x7D)
  sysInfo.mark()
  sysInfo.string("protocol_version")
  sysInfo.int(1001)
  sysInfo.string("little_endian")
  sysInfo.op(0x88)
  sysInfo.op(0x75)
  sysInfo.stop()
  var keys = PickleEmitter()
  keys.op(0x5D)
  keys.mark()
  for storage in storages { keys.string(storage.key) }
  keys.op(0x65)
  keys.stop()
  var bytes = magic.bytes + version.bytes + sysInfo.bytes + PickleEmitter.stateDict(tensors, legacy: true) + keys.bytes
  for storage in storages {
    bytes += withUnsafeBytes(of: storage.numel.littleEndian) { Array($0) }
    bytes += storage.data
  }
  return bytes
}
