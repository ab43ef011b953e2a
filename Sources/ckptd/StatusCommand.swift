import ArgumentParser

struct StatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(commandName: "status", abstract: "Not implemented yet.")
  func run() async throws { throw ExitCode.failure }
}
