import ArgumentParser
import CheckpointDaemon
import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

@main
struct Ckptd: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ckptd",
    abstract: "Converts training checkpoints between safetensors and PyTorch .bin, as they land.",
    // The one version constant: the status file and the Debian package (`make deb` asks the binary) use it too.
    version: Daemon.version,
    subcommands: [
      RunCommand.self, ConvertCommand.self, InspectCommand.self, VerifyCommand.self, StatusCommand.self,
      ConfigCommand.self,
    ]
  )

  /// Exit codes per DESIGN.md: 0 success, 1 the work failed, 2 usage error (ArgumentParser's own is 64).
  static func main() async {
    do {
      var command = try parseAsRoot()
      if var asyncCommand = command as? any AsyncParsableCommand {
        try await asyncCommand.run()
      } else {
        try command.run()
      }
    } catch let error as CheckpointError {
      FileHandleOutput.standardError("ckptd: \(error.description)")
      Glibc.exit(1)
    } catch {
      let code = exitCode(for: error)
      let message = fullMessage(for: error)
      if code == .success {
        // --help, --version and the like: the text goes to standard output.
        if !message.isEmpty { print(message) }
        Glibc.exit(0)
      }
      // A command that throws ExitCode has already said what it had to say.
      if error is ExitCode { Glibc.exit(code.rawValue) }
      if !message.isEmpty { FileHandleOutput.standardError(message) }
      Glibc.exit(code == ExitCode.validationFailure ? 2 : code.rawValue)
    }
  }
}

/// Writes one line to standard error.
enum FileHandleOutput {
  static func standardError(_ line: String) {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    _ = text.withCString { pointer in Glibc.write(2, pointer, strlen(pointer)) }
  }
}
