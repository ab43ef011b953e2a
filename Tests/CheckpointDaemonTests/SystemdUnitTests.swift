import Foundation
import Testing

/// `systemd-analyze verify` on the shipped unit (and the example drop-in); any output is a failure, since the tool
/// exits 0 on unknown keys and bad values.
@Suite struct SystemdUnitTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

  @Test func unitPassesSystemdAnalyzeVerify() throws {
    let tool = "/usr/bin/systemd-analyze"
    try #require(FileManager.default.isExecutableFile(atPath: tool), "systemd-analyze is not installed")
    let dir = CoreTempDir()
    let unit = try String(contentsOfFile: Self.root + "/systemd/ckptd.service", encoding: .utf8)
    #expect(unit.contains("ExecStart=/usr/local/bin/ckptd run"))
    #expect(unit.contains("Type=notify"))
    // ExecStart must name an existing executable: point it at a stand-in.
    try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir.sub("ckptd"))
    try dir.write("ckptd.service", unit.replacingOccurrences(of: "/usr/local/bin/ckptd", with: dir.sub("ckptd")))
    // Drop-ins beside the unit are read too: check the example.
    try FileManager.default.createDirectory(atPath: dir.sub("ckptd.service.d"), withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      atPath: Self.root + "/systemd/ckptd.service.d/10-output-dirs.conf.example",
      toPath: dir.sub("ckptd.service.d/10-output-dirs.conf"))
    let (status, output) = try run(tool, ["verify", dir.sub("ckptd.service")])
    #expect(status == 0)
    #expect(output.isEmpty, "systemd-analyze verify said:\n\(output)")
  }

  @Test func verifyCatchesABadKey() throws {
    // The check itself must be able to fail: a unit with an unknown key produces output.
    let tool = "/usr/bin/systemd-analyze"
    try #require(FileManager.default.isExecutableFile(atPath: tool), "systemd-analyze is not installed")
    let dir = CoreTempDir()
    try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir.sub("x"))
    try dir.write("bad.service", "[Service]\nType=notify\nExecStart=\(dir.sub("x"))\nWatchdogSecs=60\n")
    let (_, output) = try run(tool, ["verify", dir.sub("bad.service")])
    #expect(output.contains("WatchdogSecs"))
  }

  @Test func unitKeepsTheHardeningAndPriorities() throws {
    let unit = try String(contentsOfFile: Self.root + "/systemd/ckptd.service", encoding: .utf8)
    for line in [
      "Type=notify", "WatchdogSec=60", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID",
      "RuntimeDirectory=ckptd", "StateDirectory=ckptd", "ConfigurationDirectory=ckptd", "Nice=10",
      "IOSchedulingClass=idle", "CPUSchedulingPolicy=batch", "ProtectSystem=strict", "NoNewPrivileges=yes",
      "PrivateTmp=yes", "ProtectHome=read-only", "RestrictAddressFamilies=AF_UNIX", "MemoryDenyWriteExecute=yes",
      "SystemCallArchitectures=native", "TimeoutStopSec=", "KillMode=",
    ] {
      #expect(unit.contains(line), "missing \(line)")
    }
  }

  private func run(_ tool: String, _ arguments: [String]) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
  }
}
