import Foundation

/// ISO 8601 timestamps with fractional seconds, UTC (`2026-11-29T04:10:51.123Z`), for the manifest and status.
public enum ISOTime {
  /// `date` as ISO 8601 with milliseconds, UTC.
  public static func string(_ date: Date) -> String {
    date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
  }

  /// Parses ISO 8601 with or without fractional seconds; nil when it is not a timestamp.
  public static func date(_ text: String) -> Date? {
    if let date = fastUTC(text) { return date }
    if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return date }
    return try? Date.ISO8601FormatStyle().parse(text)
  }

  /// The exact form ckptd writes, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, parsed by hand: start-up reads every
  /// manifest record, and Foundation's parser costs tens of microseconds a timestamp. Anything else
  /// (offsets, other layouts) returns nil and goes to Foundation.
  static func fastUTC(_ text: String) -> Date? {
    var utf8 = text.utf8.makeIterator()
    var bytes: [UInt8] = []
    bytes.reserveCapacity(32)
    while let byte = utf8.next() {
      bytes.append(byte)
      if bytes.count > 32 { return nil }
    }
    guard bytes.count >= 20, bytes.last == UInt8(ascii: "Z") else { return nil }
    func number(_ range: Range<Int>) -> Int? {
      var value = 0
      for index in range {
        let digit = Int(bytes[index]) - 48
        guard (0...9).contains(digit) else { return nil }
        value = value * 10 + digit
      }
      return value
    }
    guard bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"), bytes[10] == UInt8(ascii: "T"),
      bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
      let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
      let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
      (1...12).contains(month), hour < 24, minute < 60, second < 60
    else { return nil }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    let monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    guard day >= 1, day <= monthDays[month - 1] else { return nil }
    var fraction = 0.0
    if bytes.count > 20 {
      guard bytes[19] == UInt8(ascii: "."), bytes.count > 21, bytes.count <= 30,
        let digits = number(20..<(bytes.count - 1))
      else { return nil }
      var scale = 1.0
      for _ in 20..<(bytes.count - 1) { scale *= 10 }
      fraction = Double(digits) / scale
    } else if bytes[19] != UInt8(ascii: "Z") {
      return nil
    }
    // Days from the civil date (H. Hinnant's algorithm), then seconds since 1970.
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    let days = era * 146_097 + dayOfEra - 719_468
    let seconds = Double(days * 86_400 + hour * 3_600 + minute * 60 + second) + fraction
    return Date(timeIntervalSince1970: seconds)
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
