import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// `exec_after` and `metrics_file` through the running daemon.
@Suite(.timeLimit(.minutes(1))) struct DaemonHooksTests {
  static func script(_ dir: String, _ name: String, _ body: String) throws -> String {
    let path = dir + "/" + name
    try ("#!/bin/sh\n" + body + "\n").write(toFile: path, atomically: false, encoding: .utf8)
    chmod(path, 0o755)
    return path
  }

  static func records(_ fixture: DaemonFixture) -> [ManifestRecord] {
    (try? Manifest(path: fixture.root + "/.ckptd-manifest.jsonl").read()) ?? []
  }

  @Test func theCommandRunsInTheCheckpointWithItsEnvironmentAndIsRecorded() async throws {
    let tools = try WatcherTempDir()
    defer { tools.cleanup() }
    let pushed = tools.path + "/pushed"
    let push = try Self.script(
      tools.path, "push.sh",
      """
      set -e
      mkdir -p "$1/$(basename "$CKPTD_CHECKPOINT")"
      echo "$CKPTD_OUTPUTS" | while read -r name; do cp "$name" "$1/$(basename "$CKPTD_CHECKPOINT")/$name"; done
      echo "$CKPTD_FORMAT $CKPTD_MANIFEST" > "$1/$(basename "$CKPTD_CHECKPOINT")/env"
      echo "pushed $(basename "$CKPTD_CHECKPOINT")"
      """)
    let fixture = try DaemonFixture(dropinExtra: "exec_after = [\"\(push)\", \"\(pushed)\"]")
    fixture.start()
    try fixture.checkpoint("checkpoint-1")
    #expect(await fixture.until { _ in fixture.events("checkpoint-1") == [.converted, .exec] })
    let exec = Self.records(fixture).last
    #expect(exec?.exitStatus == 0)
    #expect(exec?.signal == nil)
    #expect(try String(contentsOfFile: pushed + "/checkpoint-1/pytorch_model.bin", encoding: .utf8) == "weights")
    #expect(
      try String(contentsOfFile: pushed + "/checkpoint-1/env", encoding: .utf8)
        == "bin \(fixture.root)/.ckptd-manifest.jsonl\n")
    await fixture.stop()
  }

  @Test func aFailingCommandIsRecordedAndTheNextConversionGoesOn() async throws {
    let tools = try WatcherTempDir()
    defer { tools.cleanup() }
    let fail = try Self.script(tools.path, "fail.sh", "echo \"no credentials for $CKPTD_NODE\" >&2\nexit 7")
    let fixture = try DaemonFixture(dropinExtra: "exec_after = [\"\(fail)\"]")
    fixture.start()
    try fixture.checkpoint("checkpoint-1")
    #expect(await fixture.until { _ in fixture.events("checkpoint-1") == [.converted, .exec] })
    try fixture.checkpoint("checkpoint-2")
    #expect(await fixture.until { _ in fixture.events("checkpoint-2") == [.converted, .exec] })
    let exec = Self.records(fixture).filter { $0.event == .exec }
    #expect(exec.map(\.exitStatus) == [7, 7])
    let node = await fixture.daemon.currentConfig.nodeName
    #expect(exec.first?.stderrTail == ["no credentials for \(node)"])
    #expect(Self.records(fixture).allSatisfy { $0.node == node })
    #expect(await fixture.daemon.status.node == node)
    // An exec record does not make a converted checkpoint look unconverted.
    #expect(await fixture.daemon.status.directories.first?.pending.isEmpty == true)
    await fixture.stop()
    #expect(fixture.converter.callCount == 2)
  }

  @Test func stoppingTheDaemonStopsARunningCommand() async throws {
    let tools = try WatcherTempDir()
    defer { tools.cleanup() }
    let started = tools.path + "/started"
    let hang = try Self.script(tools.path, "hang.sh", "touch \"\(started)\"\nexec sleep 1000")
    let fixture = try DaemonFixture(dropinExtra: "exec_after = [\"\(hang)\"]", execKillGrace: .seconds(1))
    fixture.start()
    try fixture.checkpoint("checkpoint-1")
    #expect(await fixture.until { await $0.hookCount == 1 })
    await fixture.stop()
    let exec = Self.records(fixture).filter { $0.event == .exec }
    #expect(exec.count == 1)
    #expect(exec.first?.signal == SIGTERM)
  }

  @Test func metricsMatchTheManifestAndPassPromtool() async throws {
    let fixture = try DaemonFixture(
      converter: FakeConverter(
        .custom { folder in
          if folder.hasSuffix("-2") { throw CheckpointError(.forbidden, path: folder, "refuses global posix.system") }
          try "weights".write(toFile: folder + "/pytorch_model.bin", atomically: false, encoding: .utf8)
          return FakeConverter.outcome
        }), mainExtra: "metrics_file = \"ckptd.prom\"")
    let file = fixture.base.path + "/ckptd.prom"
    fixture.start()
    for name in ["checkpoint-1", "checkpoint-2", "checkpoint-3"] { try fixture.checkpoint(name) }
    #expect(
      await fixture.until { _ in
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        return text.contains(#"outcome="converted"} 2"#) && text.contains(#"outcome="failed"} 1"#)
      })
    await fixture.stop()
    let text = try String(contentsOfFile: file, encoding: .utf8)
    let manifest = Self.records(fixture)
    for event in [ManifestEvent.converted, .failed] {
      let count = manifest.filter { $0.event == event }.count
      #expect(
        text.contains(#"ckptd_conversions_total{directory="\#(fixture.root)",outcome="\#(event.rawValue)"} \#(count)"#))
    }
    let read = manifest.filter { $0.event == .converted }.flatMap(\.sources).reduce(0) { $0 + $1.bytes }
    #expect(text.contains(#"ckptd_read_bytes_total{directory="\#(fixture.root)"} \#(read)"#))
    #expect(text.contains("ckptd_conversions_running 0"))
    let (status, output) = try MetricsTests.promtool(text)
    #expect(status == 0, "\(output)")
  }
}
