import Foundation
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// `ckptd status` and `ckptd config check` through the built binary (`swift build` builds it with the tests).
@Suite struct StatusCommandTests {
  static let binary =
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path + "/.build/debug/ckptd"

  struct Result {
    var status: Int32
    var stdout: String
    var stderr: String
  }

  static func ckptd(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
    try #require(FileManager.default.isExecutableFile(atPath: binary), "build first: \(binary) is missing")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env["CKPTD_CONFIG"] = "/nonexistent/ckptd.toml"
    env.merge(environment) { _, new in new }
    process.environment = env
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Result(
      status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
      stderr: String(decoding: stderr, as: UTF8.self))
  }

  @Test func liveDaemonShowsTableAndExitsZero() throws {
    let dir = CoreTempDir()
    let path = dir.sub("status.json")
    try StatusFile.write(StatusTests.sample(pid: getpid(), updated: Date()), to: path)
    let result = try Self.ckptd(["status", "--status-file", path])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("DIRECTORY"))
    #expect(result.stdout.contains("checkpoint-500  25%"))
    #expect(result.stderr.isEmpty)

    let json = try Self.ckptd(["status", "--status-file", path, "--json"])
    #expect(json.status == 0)
    let decoded = try JSONDecoder().decode(StatusSnapshot.self, from: Data(json.stdout.utf8))
    #expect(decoded.pid == getpid())
  }

  @Test func missingFileExitsThree() throws {
    let dir = CoreTempDir()
    let result = try Self.ckptd(["status", "--status-file", dir.sub("none.json")])
    #expect(result.status == 3)
    #expect(result.stderr.contains("not running"))
    #expect(result.stderr.split(separator: "\n").count == 1)
  }

  @Test func deadPidExitsThree() throws {
    let dir = CoreTempDir()
    let path = dir.sub("status.json")
    try StatusFile.write(StatusTests.sample(pid: Int32.max, updated: Date()), to: path)
    let result = try Self.ckptd(["status", "--status-file", path, "--json"])
    #expect(result.status == 3)
    #expect(result.stderr.contains("is not running"))
    #expect(result.stdout.contains("\"schema_version\""))
  }

  @Test func staleFileExitsThree() throws {
    let dir = CoreTempDir()
    let path = dir.sub("status.json")
    try StatusFile.write(StatusTests.sample(pid: getpid(), updated: Date(timeIntervalSinceNow: -300)), to: path)
    let result = try Self.ckptd(["status", "--status-file", path])
    #expect(result.status == 3)
    #expect(result.stderr.contains("stale"))
  }

  @Test func statusFileFromConfig() throws {
    let dir = CoreTempDir()
    try StatusFile.write(StatusTests.sample(pid: getpid(), updated: Date()), to: dir.sub("state/status.json"))
    let config = try dir.write("ckptd.toml", "status_file = \"state/status.json\"")
    let explicit = try Self.ckptd(["status", "--config", config])
    #expect(explicit.status == 0, "\(explicit.stderr)")
    let fromEnvironment = try Self.ckptd(["status"], environment: ["CKPTD_CONFIG": config])
    #expect(fromEnvironment.status == 0, "\(fromEnvironment.stderr)")
  }

  @Test func configCheckPrintsSettingsOrFailsWithFileAndReason() throws {
    let dir = CoreTempDir()
    try dir.write("watch.d/10-a.toml", "path = \"/data/a\"\nformat = \"safetensors\"\ndtype = \"f16\"")
    let config = try dir.write("ckptd.toml", "dropin_dirs = [\"watch.d\"]")
    let good = try Self.ckptd(["config", "check", "--config", config])
    #expect(good.status == 0, "\(good.stderr)")
    #expect(good.stdout.contains("/data/a  (from \(dir.sub("watch.d/10-a.toml")))"))
    #expect(good.stdout.contains("dtype = f16"))

    try dir.write("watch.d/20-b.toml", "path = \"relative\"\nformat = \"bin\"")
    let broken = try Self.ckptd(["config", "check", "--config", config])
    #expect(broken.status == 1)
    #expect(broken.stderr.contains("\(dir.sub("watch.d/20-b.toml")): path must be absolute"))
    #expect(broken.stdout.contains("/data/a"))

    let badMain = try dir.write("bad.toml", "workers = 0")
    let main = try Self.ckptd(["config", "check", "--config", badMain])
    #expect(main.status == 1)
    #expect(main.stderr.contains("\(badMain): workers must be 1 or more"))
  }
}
