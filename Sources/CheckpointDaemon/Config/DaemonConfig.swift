#if canImport(Glibc)
  import Glibc
#endif

/// A drop-in that could not be used: which file, and why. The daemon skips it and keeps the others.
public struct DropinProblem: Sendable, Equatable, Codable {
  /// The drop-in file (or folder) at fault.
  public var file: String
  /// What is wrong with it, in words for the person who wrote it.
  public var message: String

  public init(file: String, message: String) {
    self.file = file
    self.message = message
  }

  /// `file: message`, the one-line form `ckptd config check` prints.
  public var description: String { "\(file): \(message)" }
}

/// A drop-in file that is not applied because another file of the same name, or a mask, hides it.
public struct MaskedDropin: Sendable, Equatable {
  /// The hidden file.
  public var file: String
  /// The file that hides it (the same path as `file` for a mask: empty file or symlink to /dev/null).
  public var maskedBy: String

  public init(file: String, maskedBy: String) {
    self.file = file
    self.maskedBy = maskedBy
  }
}

/// The daemon's whole configuration: the main TOML file plus every drop-in that survived precedence.
public struct DaemonConfig: Sendable, Equatable {
  /// The main file it was read from.
  public var configFile: String
  /// Where the status document is written (`status_file`).
  public var statusFile: String
  /// Drop-in folders, highest precedence first, absolute (relative ones resolved against the config folder).
  public var dropinDirs: [String]
  /// Conversions at once (`workers`, >= 1).
  public var workers: Int
  /// swift-log level name (`log_level`): trace, debug, info, notice, warning, error, critical.
  public var logLevel: String
  /// Prometheus text file for node_exporter's textfile collector (`metrics_file`); "" = off.
  public var metricsFile: String = ""
  /// Every usable watched directory, in drop-in file-name order.
  public var watches: [WatchConfig]
  /// Drop-ins that were skipped, with the reason.
  public var problems: [DropinProblem]
  /// Drop-ins hidden by precedence or masked (for `ckptd config check`).
  public var masked: [MaskedDropin]
  /// This instance's name in claims, manifest records and the status file (`node_name`; default: host name).
  public var nodeName: String = DaemonConfig.defaultNodeName()
  /// Seconds a claim or manifest lock must be seen unchanged before it counts as stale (`claim_ttl_seconds`).
  public var claimTTLSeconds: Double = DaemonConfig.defaultClaimTTLSeconds

  public static let defaultStatusFile = "/run/ckptd/status.json"
  public static let defaultDropinDirs = ["/etc/ckptd/watch.d", "/run/ckptd/watch.d", "/usr/lib/ckptd/watch.d"]
  public static let defaultLogLevel = "info"
  public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
  public static let defaultClaimTTLSeconds = 120.0

  /// The host name (gethostname(2)), or "localhost" when it cannot be read.
  public static func defaultNodeName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return name.isEmpty ? "localhost" : name
  }

  /// `claim_ttl_seconds` as a duration.
  public var claimTTL: Duration { .milliseconds(Int64((claimTTLSeconds * 1000).rounded())) }

  public init(
    configFile: String, statusFile: String = DaemonConfig.defaultStatusFile,
    dropinDirs: [String] = DaemonConfig.defaultDropinDirs, workers: Int = 1,
    logLevel: String = DaemonConfig.defaultLogLevel, watches: [WatchConfig] = [], problems: [DropinProblem] = [],
    masked: [MaskedDropin] = []
  ) {
    self.configFile = configFile
    self.statusFile = statusFile
    self.dropinDirs = dropinDirs
    self.workers = workers
    self.logLevel = logLevel
    self.watches = watches
    self.problems = problems
    self.masked = masked
  }
}
