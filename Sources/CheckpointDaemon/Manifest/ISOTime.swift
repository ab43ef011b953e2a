import Foundation

/// ISO 8601 timestamps with fractional seconds, UTC (`2026-11-29T04:10:51.123Z`), for the manifest and status.
public enum ISOTime {
  /// `date` as ISO 8601 with milliseconds, UTC.
  public static func string(_ date: Date) -> String {
    date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
  }

  /// Parses ISO 8601 with or without fractional seconds; nil when it is not a timestamp.
  public static func date(_ text: String) -> Date? {
    if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return date }
    return try? Date.ISO8601FormatStyle().parse(text)
  }

  static func decode<K: CodingKey>(_ container: KeyedDecodingContainer<K>, _ key: K) throws -> Date {
    let text = try container.decode(String.self, forKey: key)
    guard let date = date(text) else {
      throw DecodingError.dataCorruptedError(
        forKey: key, in: container, debugDescription: "not an ISO 8601 timestamp: \(text)")
    }
    return date
  }
}
