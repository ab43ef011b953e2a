import CheckpointConversion
import CheckpointFormats
import Synchronization
import Testing

@testable import ckptd

/// Records every call a progress reporter gets.
final class RecordingReporter: ProgressReporting {
  let calls = Mutexed<[String]>([])

  func begin(_ label: String) { calls.withLock { $0.append("begin \(label)") } }
  func update(done: Int64, total: Int64) { calls.withLock { $0.append("update") } }
  func finish() { calls.withLock { $0.append("finish") } }
}

@Suite struct ConvertBatchTests {
  static func result(_ path: String) -> ConversionResult {
    ConversionResult(path: path, outcome: .converted, target: .safetensors, dtype: .keep)
  }

  @Test func everyPathIsTriedAndEachFailureReportedOnce() async {
    var reported: [String] = []
    var printed: [String] = []
    let batch = await ConvertCommand.convertEach(
      ["a", "b", "c", "d"], bar: nil, isInterrupted: { false },
      convert: { path in
        if path == "b" { throw CheckpointError(.invalidFormat, path: "b/model.safetensors", "header is not JSON") }
        if path == "c" { throw CheckpointError(.vanished, path: "", "does not exist") }
        return Self.result(path)
      },
      onResult: { printed.append($0.path) }, onFailure: { reported.append($0) })
    #expect(batch.results.map(\.path) == ["a", "d"])
    #expect(printed == ["a", "d"])
    #expect(reported == ["b/model.safetensors: header is not JSON", "c: does not exist"])
    #expect(batch.failures == reported)
  }

  @Test func theProgressBarIsBegunAndFinishedOncePerPath() async {
    let reporter = RecordingReporter()
    _ = await ConvertCommand.convertEach(
      ["a", "b"], bar: reporter, isInterrupted: { false },
      convert: { path in
        reporter.update(done: 1, total: 2)
        if path == "a" { throw CheckpointError(.io, path: path, "disk full") }
        return Self.result(path)
      },
      onResult: { _ in }, onFailure: { _ in })
    #expect(reporter.calls.withLock { $0 } == ["begin a", "update", "finish", "begin b", "update", "finish"])
  }

  @Test func anInterruptStopsBeforeTheNextPath() async {
    let interrupted = Atomic<Bool>(false)
    var tried: [String] = []
    let batch = await ConvertCommand.convertEach(
      ["a", "b", "c"], bar: nil, isInterrupted: { interrupted.load(ordering: .relaxed) },
      convert: { path in
        tried.append(path)
        interrupted.store(true, ordering: .relaxed)
        throw CheckpointError(.cancelled, path: path, "cancelled")
      },
      onResult: { _ in }, onFailure: { _ in })
    #expect(tried == ["a"])
    #expect(batch.failures == ["a: cancelled", "b: not converted: interrupted"])
  }

  @Test func aTerminalBarIsClearedOnceWhenItWasDrawn() async {
    let written = Mutexed<[String]>([])
    let bar = ProgressBar(isTerminal: true, write: { text in written.withLock { $0.append(text) } })
    bar.begin("ckpt")
    bar.update(done: 2, total: 2)
    bar.finish()
    bar.finish()
    let lines = written.withLock { $0 }
    #expect(lines.count == 2)
    #expect(lines.first?.hasPrefix("\rckpt [########################] 100%") == true)
    #expect(lines.last == "\r\u{1B}[K")
  }
}
