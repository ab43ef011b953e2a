import ArgumentParser
import CheckpointDaemon
import CheckpointFormats

/// `ckptd config`: configuration tools.
struct ConfigCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "config",
    abstract: "Check the daemon's configuration.",
    subcommands: [ConfigCheckCommand.self]
  )
}

/// `ckptd config check`: validates the main file and every drop-in and prints the effective settings.
struct ConfigCheckCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "check",
    abstract: "Validate the config file and every drop-in; print the settings each watched directory gets.",
    discussion: """
      Exits 1 and prints "file: reason" lines on standard error when the main file or any drop-in is broken \
      (the daemon itself skips a broken drop-in and keeps the others).
      """
  )

  @Option(name: .long, help: "The main config file (default: $CKPTD_CONFIG or /etc/ckptd/ckptd.toml).")
  var config: String?

  func run() async throws {
    let path = config ?? ConfigLoader.defaultPath()
    let loaded = try ConfigLoader.load(path: path)
    // A daemon running with this config says when it last polled each directory.
    let running = (try? StatusFile.read(path: loaded.statusFile)).flatMap {
      StatusHealth.processIsAlive($0.pid) ? $0 : nil
    }
    print(ConfigReport.render(loaded, running: running), terminator: "")
    if !loaded.problems.isEmpty {
      for problem in loaded.problems { FileHandleOutput.standardError("ckptd: \(problem.description)") }
      throw ExitCode.failure
    }
  }
}
