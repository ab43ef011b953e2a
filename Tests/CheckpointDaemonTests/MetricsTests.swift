import Foundation
import Testing

@testable import CheckpointDaemon

/// The metrics file: swift-metrics in, Prometheus text out, checked by the real `promtool`.
@Suite struct MetricsTests {
  static func promtool(_ text: String) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
    process.arguments = ["check", "metrics"]
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = output
    try process.run()
    input.fileHandleForWriting.write(Data(text.utf8))
    try input.fileHandleForWriting.close()
    let bytes = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: bytes, as: UTF8.self))
  }

  static func sample() -> DaemonMetrics {
    let metrics = DaemonMetrics()
    metrics.conversionFinished(
      directory: "/data/runs/a", outcome: "converted", seconds: 1.5, bytesRead: 1000, bytesWritten: 900)
    metrics.conversionFinished(
      directory: "/data/runs/a", outcome: "converted", seconds: 0.2, bytesRead: 10, bytesWritten: 9)
    metrics.conversionFinished(
      directory: "/data/runs/b", outcome: "failed", seconds: 0.1, bytesRead: 5, bytesWritten: 0)
    metrics.setPending(directory: "/data/runs/a", count: 2)
    metrics.setRunning(1)
    metrics.setWatches(12)
    metrics.overflowed()
    metrics.rescanned()
    metrics.rescanned()
    metrics.polled()
    metrics.execFinished(result: "ok")
    metrics.execFinished(result: "timeout")
    return metrics
  }

  @Test func promtoolAcceptsTheFile() throws {
    let text = Self.sample().render()
    let (status, output) = try Self.promtool(text)
    #expect(status == 0, "promtool check metrics: \(output)\n\(text)")
    for name in MetricCatalog.help.keys {
      #expect(text.contains("# HELP \(name) "), "no HELP for \(name)")
    }
  }

  @Test func promtoolRejectsWhatItShould() throws {
    // The check above can fail: promtool does reject a counter without help text.
    let (status, _) = try Self.promtool("# TYPE ckptd_x_total counter\nckptd_x_total 1\n")
    #expect(status != 0)
  }

  @Test func countersAndGaugesCarryTheirValues() {
    let text = Self.sample().render()
    let lines = Set(text.split(separator: "\n").map(String.init))
    #expect(lines.contains(#"ckptd_conversions_total{directory="/data/runs/a",outcome="converted"} 2"#))
    #expect(lines.contains(#"ckptd_conversions_total{directory="/data/runs/b",outcome="failed"} 1"#))
    #expect(lines.contains(#"ckptd_read_bytes_total{directory="/data/runs/a"} 1010"#))
    #expect(lines.contains(#"ckptd_written_bytes_total{directory="/data/runs/a"} 909"#))
    #expect(lines.contains(#"ckptd_conversion_seconds_count{directory="/data/runs/a"} 2"#))
    #expect(lines.contains(#"ckptd_conversion_seconds_bucket{directory="/data/runs/a",le="1.0"} 1"#))
    #expect(lines.contains(#"ckptd_checkpoints_pending{directory="/data/runs/a"} 2.0"#))
    #expect(lines.contains("ckptd_conversions_running 1.0"))
    #expect(lines.contains("ckptd_inotify_watches 12.0"))
    #expect(lines.contains("ckptd_rescans_total 2"))
    #expect(lines.contains(#"ckptd_exec_runs_total{result="timeout"} 1"#))
  }

  @Test func anIdleDaemonAlreadyExportsItsCountersAtZero() throws {
    let text = DaemonMetrics().render()
    #expect(text.contains("ckptd_rescans_total 0"))
    #expect(text.contains("ckptd_inotify_overflows_total 0"))
    #expect(try Self.promtool(text).status == 0)
  }

  @Test func theFileIsReplacedWhole() throws {
    let dir = CoreTempDir()
    let path = dir.sub("ckptd.prom")
    let metrics = Self.sample()
    try metrics.write(to: path)
    #expect(try String(contentsOfFile: path, encoding: .utf8) == metrics.render())
    metrics.rescanned()
    try metrics.write(to: path)
    #expect(try String(contentsOfFile: path, encoding: .utf8).contains("ckptd_rescans_total 3"))
    // No temporary is left beside it.
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["ckptd.prom"])
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    #expect((attributes[.posixPermissions] as? Int) == 0o644)
  }

  @Test func writingIntoAMissingFolderNamesTheFile() {
    let error = #expect(throws: (any Error).self) { try DaemonMetrics().write(to: "/nonexistent/dir/ckptd.prom") }
    #expect("\(error.map { "\($0)" } ?? "")".contains("/nonexistent/dir"))
  }
}
