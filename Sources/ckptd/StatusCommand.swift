import ArgumentParser
import CheckpointDaemon
import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

/// `ckptd status`: what the running daemon is doing, from its status file.
struct StatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract: "Show what the running daemon is doing: directories, counts, pending checkpoints, conversions.",
    discussion: """
      Reads the status file the daemon replaces every few seconds. Exits 3 when the file is missing, the daemon's \
      pid is not alive, or the file has not been updated for \(Int(StatusHealth.defaultStaleAfter)) seconds.
      """
  )

  @Option(name: .long, help: "The status file (default: status_file from the config, or /run/ckptd/status.json).")
  var statusFile: String?

  @Option(
    name: .long, help: "The config file that names the status file (default: $CKPTD_CONFIG or /etc/ckptd/ckptd.toml).")
  var config: String?

  @Flag(name: .long, help: "Print the status document as JSON (for scripts).")
  var json = false

  func run() async throws {
    let path = try statusPath()
    let snapshot: StatusSnapshot
    do {
      snapshot = try StatusFile.read(path: path)
    } catch let error as CheckpointError where error.errno == ENOENT {
      FileHandleOutput.standardError("ckptd: \(path): no status file; ckptd is not running")
      throw ExitCode(3)
    }
    if json {
      let bytes = try StatusFile.encode(snapshot)
      print(String(decoding: bytes, as: UTF8.self), terminator: "")
    } else {
      print(StatusRenderer.render(snapshot), terminator: "")
    }
    if let problem = StatusHealth.problem(with: snapshot) {
      FileHandleOutput.standardError("ckptd: \(path): \(problem)")
      throw ExitCode(3)
    }
  }

  /// --status-file, else the config's status_file (an explicit --config must load), else the default.
  func statusPath() throws -> String {
    if let statusFile { return statusFile }
    if let config { return try ConfigLoader.loadMain(path: config).statusFile }
    if let loaded = try? ConfigLoader.loadMain(path: ConfigLoader.defaultPath()) { return loaded.statusFile }
    return DaemonConfig.defaultStatusFile
  }
}
