/// `max_shard_size` with transformers' meaning.
///
/// transformers 5.24's `save_pretrained` hands the string to huggingface_hub's `parse_size_to_int`: a number
/// (fractions allowed) followed by `KB`, `MB`, `GB` or `TB` in any case, meaning powers of 10, truncated to
/// whole bytes (`int(value * multiplier)`). transformers' own `convert_file_size_to_int` adds `KiB`, `MiB`
/// and `GiB` (whole numbers times powers of 2); those are accepted too. A plain integer is a byte count
/// (what `save_pretrained(max_shard_size=1000)` takes). The empty string means "keep the source's sharding".
public enum ShardSize {
  /// Why a size did not parse.
  public struct ParseError: Error, Sendable, Equatable {
    public var message: String
  }

  /// The limit in bytes, or nil for "" (keep the source's sharding).
  public static func parse(_ text: String) throws(ParseError) -> Int64? {
    let trimmed = text.trimmingWhitespace()
    if trimmed.isEmpty { return nil }
    let value = try bytes(trimmed, original: text)
    guard value > 0 else {
      throw ParseError(message: "'\(text)' is not a size: it must be larger than 0")
    }
    return value
  }

  static func bytes(_ text: String, original: String) throws(ParseError) -> Int64 {
    let invalid = ParseError(
      message: "'\(original)' is not a size: use a number and a unit such as \"5GB\", \"500MB\" or \"4GiB\"")
    if text.allSatisfy({ $0.isASCII && $0.isNumber }) {
      guard let value = Int64(text) else { throw invalid }
      return value
    }
    let upper = text.uppercased()
    let binary: [(String, Int64)] = [("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10)]
    for (unit, multiplier) in binary where upper.hasSuffix(unit) {
      let digits = String(text.dropLast(3)).trimmingWhitespace()
      guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let count = Int64(digits) else {
        throw invalid
      }
      let (product, overflow) = count.multipliedReportingOverflow(by: multiplier)
      guard !overflow else { throw invalid }
      return product
    }
    let decimal: [String: Double] = ["TB": 1e12, "GB": 1e9, "MB": 1e6, "KB": 1e3]
    guard upper.count >= 2, let multiplier = decimal[String(upper.suffix(2))] else { throw invalid }
    let number = String(text.dropLast(2)).trimmingWhitespace()
    let numberCharacters = Set("0123456789.eE+-")
    guard !number.isEmpty, number.allSatisfy(numberCharacters.contains), let value = Double(number), value.isFinite
    else { throw invalid }
    let product = value * multiplier
    guard product < 9.2e18 else { throw invalid }
    return Int64(product.rounded(.towardZero))
  }
}

extension String {
  /// The string without leading and trailing spaces, tabs and newlines (Python's `str.strip()` for ASCII).
  func trimmingWhitespace() -> String {
    let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
    guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
      return ""
    }
    return String(self[first...last])
  }
}
