import ArgumentParser
import CheckpointDaemon
import CheckpointFormats
import Foundation

struct RunCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Run the daemon in the foreground (systemd Type=notify).",
    discussion: """
      Watches every output directory configured in the drop-ins and converts each finished checkpoint folder.
      SIGHUP (or any change in a drop-in directory) reloads the configuration; SIGTERM stops within seconds,
      abandoning the file being written (it is converted again on the next start).
      """
  )

  @Option(name: .long, help: "Main config file (default: $CKPTD_CONFIG or /etc/ckptd/ckptd.toml).")
  var config: String?

  func run() async throws {
    let path =
      config ?? ProcessInfo.processInfo.environment["CKPTD_CONFIG"] ?? "/etc/ckptd/ckptd.toml"
    let loaded = try ConfigLoader.load(path: path)
    Daemon.bootstrapLogging(levelName: loaded.logLevel)
    // Started lowered (the unit's Nice=/CPUSchedulingPolicy=/IOSchedulingClass=): so are all threads, for good.
    Daemon.keepStartPriority()
    let daemon = try Daemon(options: Daemon.Options(configPath: path, converter: EngineConverter()))
    await daemon.run()
  }
}
