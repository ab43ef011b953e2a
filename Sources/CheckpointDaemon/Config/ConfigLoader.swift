import CheckpointFormats
import Foundation
import TOMLKit

/// Reads the main TOML file and every drop-in (DESIGN.md "Configuration").
///
/// A broken main file throws `CheckpointError` naming the file and the reason. A broken drop-in never throws: it
/// lands in `DaemonConfig.problems` and is skipped; the other drop-ins keep working.
public enum ConfigLoader {
  /// `/etc/ckptd/ckptd.toml`, the installed location.
  public static let installedPath = "/etc/ckptd/ckptd.toml"

  /// `$CKPTD_CONFIG` when set, else `/etc/ckptd/ckptd.toml`.
  public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
    if let path = environment["CKPTD_CONFIG"], !path.isEmpty { return path }
    return installedPath
  }

  /// Loads the main file at `path` and then the drop-ins it names. Relative `dropin_dirs` and `status_file` are
  /// resolved against the main file's folder.
  public static func load(path: String) throws -> DaemonConfig {
    let text = try readText(path: path)
    var config = try parseMain(text: text, path: path)
    resolvePaths(of: &config)
    loadDropins(into: &config)
    checkMetricsFile(in: &config)
    return config
  }

  /// Reads only the main file (no drop-ins), `dropin_dirs` resolved; for `ckptd status` to find the status file.
  public static func loadMain(path: String) throws -> DaemonConfig {
    var config = try parseMain(text: readText(path: path), path: path)
    resolvePaths(of: &config)
    return config
  }

  /// Parses the main file's text (no drop-ins read). Relative `dropin_dirs` are returned as written.
  public static func parseMain(text: String, path: String) throws -> DaemonConfig {
    let table: TOMLTable
    do {
      table = try TOMLTable(string: text)
    } catch let error as TOMLParseError {
      throw CheckpointError(
        .invalidFormat, path: path,
        "not valid TOML at line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
    } catch {
      throw CheckpointError(.invalidFormat, path: path, "not valid TOML: \(error)")
    }
    var config = DaemonConfig(configFile: path)
    let keys = TOMLKeys(table: table)
    do {
      try keys.rejectUnknown(allowed: [
        "status_file", "dropin_dirs", "workers", "log_level", "metrics_file", "node_name", "claim_ttl_seconds",
      ])
      if let value = try keys.string("status_file") {
        guard !value.isEmpty else { throw ConfigKeyError("status_file must not be empty") }
        config.statusFile = value
      }
      if let value = try keys.stringArray("dropin_dirs") {
        guard !value.contains(where: \.isEmpty) else { throw ConfigKeyError("dropin_dirs has an empty entry") }
        config.dropinDirs = value
      }
      if let value = try keys.int("workers") {
        guard value >= 1 else { throw ConfigKeyError("workers must be 1 or more, not \(value)") }
        guard value <= 64 else { throw ConfigKeyError("workers must be 64 or fewer, not \(value)") }
        config.workers = value
      }
      if let value = try keys.string("log_level") {
        guard DaemonLogging.level(named: value) != nil else {
          throw ConfigKeyError(
            "log_level must be one of \(DaemonConfig.logLevels.joined(separator: ", ")), not \"\(value)\"")
        }
        config.logLevel = value.lowercased()
      }
      if let value = try keys.string("metrics_file") { config.metricsFile = value }
      if let value = try keys.string("node_name") {
        guard !value.isEmpty, value.count <= 255, !value.contains(where: { $0.isNewline || $0 == "/" }) else {
          throw ConfigKeyError("node_name must be 1 to 255 characters without \"/\" or line breaks, not \"\(value)\"")
        }
        config.nodeName = value
      }
      if let value = try keys.number("claim_ttl_seconds") {
        guard value.isFinite, value >= 0.1, value <= 86_400 else {
          throw ConfigKeyError("claim_ttl_seconds must be between 0.1 and 86400, not \(value)")
        }
        config.claimTTLSeconds = value
      }
    } catch let error as ConfigKeyError {
      throw CheckpointError(.invalidFormat, path: path, error.message)
    }
    return config
  }

  /// Relative `dropin_dirs` and `status_file` are taken relative to the config file's folder.
  static func resolvePaths(of config: inout DaemonConfig) {
    let folder = (absolute(config.configFile) as NSString).deletingLastPathComponent
    config.dropinDirs = config.dropinDirs.map { resolve($0, against: folder) }
    config.statusFile = resolve(config.statusFile, against: folder)
    if !config.metricsFile.isEmpty { config.metricsFile = resolve(config.metricsFile, against: folder) }
  }

  /// A `metrics_file` whose folder does not exist turns metrics off with a problem naming the key; the watched
  /// directories keep working.
  static func checkMetricsFile(in config: inout DaemonConfig) {
    guard !config.metricsFile.isEmpty else { return }
    let folder = (config.metricsFile as NSString).deletingLastPathComponent
    guard !isDirectory(folder) || isDirectory(config.metricsFile) else { return }
    let reason =
      isDirectory(config.metricsFile)
      ? "metrics_file \(config.metricsFile) is a folder, not a file; metrics are off"
      : "metrics_file \(config.metricsFile): the folder \(folder) does not exist; metrics are off"
    config.problems.append(DropinProblem(file: config.configFile, message: reason))
    config.metricsFile = ""
  }

  static func readText(path: String) throws -> String {
    let bytes: [UInt8]?
    do {
      bytes = try Manifest.readWhole(path: path)
    } catch let error as CheckpointError {
      throw CheckpointError(.io, path: path, error.message.replacingOccurrences(of: "manifest", with: "file"))
    }
    guard let bytes else {
      throw CheckpointError(.io, path: path, "no such file (pass --config FILE or set CKPTD_CONFIG)")
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw CheckpointError(.invalidFormat, path: path, "not UTF-8 text")
    }
    return text
  }

  static func absolute(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    return FileManager.default.currentDirectoryPath + "/" + path
  }

  static func resolve(_ dir: String, against folder: String) -> String {
    let joined = dir.hasPrefix("/") ? dir : folder + "/" + dir
    return (joined as NSString).standardizingPath
  }
}

/// A key with a bad value or type; becomes a `CheckpointError` or a `DropinProblem` with the file name.
struct ConfigKeyError: Error {
  var message: String
  init(_ message: String) { self.message = message }
}
