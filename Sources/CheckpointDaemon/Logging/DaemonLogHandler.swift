import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// A swift-log handler that writes one line per event to standard error: `<N>message key=value` (syslog priority
/// prefix) when stderr is the journal, `LEVEL message key=value` otherwise.
public struct DaemonLogHandler: LogHandler {
  public var logLevel: Logger.Level
  public var metadata: Logger.Metadata = [:]
  public var metadataProvider: Logger.MetadataProvider?
  /// Whether lines carry `<N>` priority prefixes (journald parses and strips them).
  public let journal: Bool
  /// The label of the logger (not printed: one daemon, one label).
  public let label: String
  private let sink: @Sendable (String) -> Void

  /// - Parameters:
  ///   - journal: nil = detect from `JOURNAL_STREAM` and standard error.
  ///   - sink: where finished lines go (tests); default: one `write(2)` to standard error per line.
  public init(
    label: String, level: Logger.Level = .info, journal: Bool? = nil,
    sink: (@Sendable (String) -> Void)? = nil
  ) {
    self.label = label
    self.logLevel = level
    self.journal = journal ?? DaemonLogging.stderrIsJournal()
    self.sink = sink ?? DaemonLogHandler.writeToStandardError
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var merged = metadata
    if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
    if let extra = event.metadata { merged.merge(extra) { _, new in new } }
    sink(Self.format(level: event.level, message: event.message.description, metadata: merged, journal: journal))
  }

  /// The line for one event, newline included.
  public static func format(level: Logger.Level, message: String, metadata: Logger.Metadata, journal: Bool)
    -> String
  {
    var line = journal ? "<\(priority(level))>" : "\(level.rawValue.uppercased()) "
    line += message.split(whereSeparator: \.isNewline).joined(separator: " ")
    for key in metadata.keys.sorted() {
      guard let value = metadata[key] else { continue }
      line += " \(key)=\(quoted(value.description))"
    }
    return line + "\n"
  }

  /// syslog priority: 7 debug, 6 info, 5 notice, 4 warning, 3 err, 2 crit.
  public static func priority(_ level: Logger.Level) -> Int {
    switch level {
    case .trace, .debug: return 7
    case .info: return 6
    case .notice: return 5
    case .warning: return 4
    case .error: return 3
    case .critical: return 2
    }
  }

  static func quoted(_ value: String) -> String {
    let plain = !value.isEmpty && !value.contains { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }
    if plain { return value }
    var escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    escaped = escaped.split(whereSeparator: \.isNewline).joined(separator: " ")
    return "\"\(escaped)\""
  }

  @Sendable static func writeToStandardError(_ line: String) {
    var bytes = Array(line.utf8)
    var offset = 0
    while offset < bytes.count {
      let wrote = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress.map { $0 + offset }, $0.count - offset) }
      if wrote < 0 && errno == EINTR { continue }
      if wrote <= 0 { return }
      offset += wrote
    }
  }
}
