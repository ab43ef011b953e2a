import CheckpointFormats
import Clocks
import Foundation
import Synchronization
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// `exec_after` with real commands: shell scripts the tests write, run as an argv (the script is argv[0]).
@Suite struct ExecAfterRunnerTests {
  /// Collects the lines a run logs and lets a test wait for one of them.
  final class LineLog: Sendable {
    private let lines = Mutexed<[ExecLine]>([])
    let stream: AsyncStream<ExecLine>
    private let continuation: AsyncStream<ExecLine>.Continuation

    init() {
      (stream, continuation) = AsyncStream.makeStream(of: ExecLine.self)
    }

    func append(_ line: ExecLine) {
      lines.withLock { $0.append(line) }
      continuation.yield(line)
    }

    var all: [ExecLine] { lines.withLock { $0 } }

    /// Returns once `line` has been logged (or the stream ended).
    func waitFor(_ line: ExecLine) async {
      for await seen in stream where seen == line { return }
    }
  }

  static func script(_ dir: CoreTempDir, _ name: String, _ body: String) throws -> String {
    let path = try dir.write(name, "#!/bin/sh\n" + body + "\n")
    chmod(path, 0o755)
    return path
  }

  @Test func copiesTheOutputsWithTheEnvironmentItIsGiven() async throws {
    let dir = CoreTempDir()
    try dir.write("ckpt/model.safetensors", "weights-1")
    try dir.write("ckpt/model.bin", "weights-2")
    let copier = try Self.script(
      dir, "copy.sh",
      """
      set -e
      dest="$1"
      mkdir -p "$dest"
      echo "$CKPTD_OUTPUTS" | while read -r name; do cp "$name" "$dest/$name"; done
      printf '%s|%s|%s|%s|%s\\n' "$CKPTD_CHECKPOINT" "$CKPTD_FORMAT" "$CKPTD_MANIFEST" "$CKPTD_NODE" "$(pwd)" > "$dest/env"
      echo "copied to $dest"
      """)
    let log = LineLog()
    let request = ExecRequest(
      argv: [copier, dir.sub("pushed")], directory: dir.sub("ckpt"),
      environment: [
        "CKPTD_CHECKPOINT": dir.sub("ckpt"), "CKPTD_FORMAT": "bin",
        "CKPTD_OUTPUTS": "model.safetensors\nmodel.bin", "CKPTD_MANIFEST": dir.sub("m.jsonl"),
        "CKPTD_NODE": "node-a",
      ], timeout: .seconds(3600))
    let outcome = await ExecAfterRunner().run(request) { log.append($0) }
    #expect(outcome.termination == .exited(0))
    #expect(outcome.succeeded && outcome.result == "ok")
    #expect(try String(contentsOfFile: dir.sub("pushed/model.safetensors"), encoding: .utf8) == "weights-1")
    #expect(try String(contentsOfFile: dir.sub("pushed/model.bin"), encoding: .utf8) == "weights-2")
    let env = try String(contentsOfFile: dir.sub("pushed/env"), encoding: .utf8)
    let cwd = URL(fileURLWithPath: dir.sub("ckpt")).resolvingSymlinksInPath().path
    #expect(env == "\(dir.sub("ckpt"))|bin|\(dir.sub("m.jsonl"))|node-a|\(cwd)\n")
    #expect(log.all == [.stdout("copied to \(dir.sub("pushed"))")])
  }

  @Test func aFailingCommandReportsItsStatusAndTheLastLinesOfStandardError() async throws {
    let dir = CoreTempDir()
    let failing = try Self.script(
      dir, "fail.sh",
      """
      echo "working"
      i=1
      while [ $i -le 25 ]; do echo "problem $i" >&2; i=$((i+1)); done
      exit 3
      """)
    let log = LineLog()
    let outcome = await ExecAfterRunner().run(
      ExecRequest(argv: [failing], directory: dir.path, environment: [:], timeout: .seconds(3600))
    ) { log.append($0) }
    #expect(outcome.termination == .exited(3))
    #expect(!outcome.succeeded && outcome.result == "failed" && !outcome.timedOut)
    #expect(outcome.stderrTail == (6...25).map { "problem \($0)" })
    #expect(outcome.summary == "exit status 3")
    #expect(log.all.contains(.stdout("working")))
    #expect(log.all.filter { if case .stderr = $0 { true } else { false } }.count == 25)
  }

  @Test func aCommandThatHangsGetsSigtermThenSigkillOnTheInjectedClock() async throws {
    let dir = CoreTempDir()
    // Ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    let hanging = try Self.script(
      dir, "hang.sh",
      """
      trap '' TERM
      echo started
      while :; do read -r _ < /dev/zero 2>/dev/null || true; done
      """)
    let clock = TestClock()
    let log = LineLog()
    let runner = ExecAfterRunner(clock: clock, killGrace: .seconds(10))
    let run = Task {
      await runner.run(ExecRequest(argv: [hanging], directory: dir.path, environment: [:], timeout: .seconds(60))) {
        log.append($0)
      }
    }
    await log.waitFor(.stdout("started"))
    let finished = Atomic<Bool>(false)
    let watcher = Task {
      let outcome = await run.value
      finished.store(true, ordering: .sequentiallyConsistent)
      return outcome
    }
    // Nothing happens before the deadline.
    await clock.advance(by: .seconds(59))
    let early = finished.load(ordering: .sequentiallyConsistent)
    #expect(!early)
    // The deadline, then the grace period, each as many times as the runner needs to have armed its timer.
    for _ in 0..<1000 where !finished.load(ordering: .sequentiallyConsistent) {
      await clock.advance(by: .seconds(10))
    }
    let outcome = await watcher.value
    #expect(outcome.timedOut)
    #expect(outcome.termination == .signaled(SIGKILL))
    #expect(outcome.result == "timeout")
  }

  @Test func aChildLeftBehindIsStoppedWhenTheCommandEnds() async throws {
    let dir = CoreTempDir()
    // The child would outlive its parent by 1000 s.
    let forking = try Self.script(
      dir, "fork.sh",
      """
      sleep 1000 &
      echo "child $!"
      exit 0
      """)
    let child = Mutexed<Int32>(-1)
    let outcome = await ExecAfterRunner(clock: TestClock()).run(
      ExecRequest(argv: [forking], directory: dir.path, environment: [:], timeout: .seconds(3600))
    ) { line in
      if case .stdout(let text) = line, text.hasPrefix("child "), let pid = Int32(text.dropFirst(6)) {
        child.withLock { $0 = pid }
      }
    }
    #expect(outcome.termination == .exited(0))
    #expect(!outcome.timedOut)
    let pid = child.withLock { $0 }
    try #require(pid > 0)
    // The runner returned only after the child closed the output pipes it inherited, which it does on its way
    // out: it is gone or a zombie now, not sleeping out its 1000 s.
    let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
    let state = stat.split(separator: ")").last?.split(separator: " ").first.map(String.init) ?? "gone"
    #expect(["gone", "Z", "X", "R"].contains(state), "child \(pid) is in state \(state)")
    #expect(state != "S")
  }

  @Test func cancellingTheRunStopsTheCommand() async throws {
    let dir = CoreTempDir()
    let sleeper = try Self.script(dir, "sleep.sh", "echo started\nexec sleep 1000")
    let log = LineLog()
    let run = Task {
      await ExecAfterRunner(clock: TestClock(), killGrace: .seconds(5)).run(
        ExecRequest(argv: [sleeper], directory: dir.path, environment: [:], timeout: .seconds(3600))
      ) { log.append($0) }
    }
    await log.waitFor(.stdout("started"))
    run.cancel()
    let outcome = await run.value
    #expect(outcome.termination == .signaled(SIGTERM))
  }

  @Test func aMissingProgramIsNotStarted() async {
    let outcome = await ExecAfterRunner().run(
      ExecRequest(argv: ["/nonexistent/push"], directory: "/", environment: [:], timeout: .seconds(1))
    ) { _ in }
    guard case .notStarted(let reason) = outcome.termination else {
      Issue.record("expected notStarted, got \(outcome.termination)")
      return
    }
    #expect(reason.contains("/nonexistent/push"))
    #expect(outcome.result == "error")
  }
}
