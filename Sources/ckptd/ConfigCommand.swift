import ArgumentParser

struct ConfigCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(commandName: "config", abstract: "Not implemented yet.")
  func run() async throws { throw ExitCode.failure }
}
