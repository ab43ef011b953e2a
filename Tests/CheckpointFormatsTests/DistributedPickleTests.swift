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
