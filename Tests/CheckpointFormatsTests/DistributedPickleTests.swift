import Foundation
import Testing

@testable import CheckpointFormats

/// The distributed allowlist: DeepSpeed and DCP classes become inert records only when asked for; anything
/// else stays refused.
@Suite struct DistributedPickleTests {
  func run(_ pickle: [UInt8], distributed: Bool) throws -> PickleValue {
    let folder = try FixtureFolder()
    let path = try folder.write("p.pkl", pickle)
    return try withExtendedLifetime(folder) {
      let file = try ReadableFile(path: path)
      let machine = PickleMachine(
        input: PickleInput(file: file, start: 0, end: file.size, cap: 1 << 20), limits: TorchReader.Limits())
      machine.distributedGlobals = distributed
      return try machine.run()
    }
  }

  /// `LossScaler()` + BUILD `{'cur_scale': 1}`, as DeepSpeed pickles it.
  var lossScaler: [UInt8] {
    var p = PickleEmitter()
    p.global("deepspeed.runtime.fp16.loss_scaler", "LossScaler")
    p.emptyTuple()
    p.op(0x81)
    p.op(0x7D)
    p.string("cur_scale")
    p.int(1)
    p.op(0x73)
    p.op(0x62)
    p.stop()
    return p.bytes
  }

  @Test func recordsAreInertAndOnlyWhenEnabled() throws {
    guard case .object(let record) = try run(lossScaler, distributed: true) else {
      Issue.record("expected a record")
      return
    }
    #expect(record.type == "deepspeed.runtime.fp16.loss_scaler.LossScaler")
    guard case .dict(let state)? = record.state, case .int(1)? = state.value(forKey: "cur_scale") else {
      Issue.record("state not kept")
      return
    }
    #expect(throws: CheckpointError.self) { _ = try run(lossScaler, distributed: false) }
  }

  @Test(arguments: [("os", "system"), ("builtins", "eval"), ("torch", "load"), ("pathlib", "Path")])
  func othersStayRefused(module: String, name: String) {
    var p = PickleEmitter()
    p.global(module, name)
    p.mark()
    p.string("x")
    p.tuple()
    p.reduce()
    p.stop()
    do {
      _ = try run(p.bytes, distributed: true)
      Issue.record("expected a refusal")
    } catch let error as CheckpointError {
      #expect(error.code == .forbidden && error.message.contains("\(module).\(name)"), "\(error)")
    } catch {
      Issue.record("unexpected \(error)")
    }
  }

  @Test func rebuildFromTypeOnlyForPlainTensors() {
    var p = PickleEmitter()
    p.global("torch._tensor", "_rebuild_from_type_v2")
    p.mark()
    p.global("torch._utils", "_rebuild_tensor_v2")
    p.global("pathlib", "PosixPath")
    p.emptyTuple()
    p.op(0x7D)
    p.tuple()
    p.reduce()
    p.stop()
    do {
      _ = try run(p.bytes, distributed: true)
      Issue.record("expected a refusal")
    } catch let error as CheckpointError {
      #expect(error.code == .forbidden && error.message.contains("_rebuild_from_type_v2"), "\(error)")
    } catch {
      Issue.record("unexpected \(error)")
    }
  }

  @Test func buildTwiceIsRefused() {
    var bytes = lossScaler
    bytes.removeLast()  // STOP
    bytes += [0x7D, 0x62, 0x2E]  // a second BUILD
    #expect(throws: CheckpointError.self) { _ = try run(bytes, distributed: true) }
  }
}

/// Chunks split along a later dimension are streamed in C order, row by row.
@Suite struct ChunkGridSourceTests {
  @Test func interleavesRowsOfChunksSplitAlongDimension1() throws {
    let folder = try FixtureFolder()
    // A 2x3 u8 tensor split into columns [0, 2) and [2, 3): chunk A = 1 2 / 4 5, chunk B = 3 / 6.
    let path = try folder.write("chunks", [1, 2, 4, 5, 3, 6])
    let file = try ReadableFile(path: path)
    let source = ChunkGridSource(
      size: [2, 3], split: 1, itemSize: 1,
      chunks: [
        .init(offsets: [0, 2], sizes: [2, 1], piece: FilePiece(file: file, offset: 4, byteCount: 2)),
        .init(offsets: [0, 0], sizes: [2, 2], piece: FilePiece(file: file, offset: 0, byteCount: 4)),
      ])
    var out: [UInt8] = []
    try StreamBuffer.with(size: 1) { scratch in try source.stream(scratch: scratch) { out += $0 } }
    #expect(out == [1, 2, 3, 4, 5, 6])
    #expect(source.byteCount == 6)
  }
}
