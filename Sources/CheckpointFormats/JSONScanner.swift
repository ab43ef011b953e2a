/// A strict JSON (RFC 8259) tokenizer over bytes, shared by `JSONValue.parse` and the safetensors header
/// parser. It never builds more than the caller asks for, so a large document is read in one pass.
///
/// Strings must be valid UTF-8 (checked with the standard library's validator), `\u` escapes must pair
/// surrogates correctly, and numbers are scanned by the JSON grammar without going through `Double`.
/// Every failure is a `CheckpointError(.invalidFormat)` naming the file and the byte position.
struct JSONScanner {
  let bytes: UnsafeRawBufferPointer
  let path: String
  /// What the document is, for messages: "header", "index".
  let what: String
  var position = 0

  init(bytes: UnsafeRawBufferPointer, path: String, what: String) {
    self.bytes = bytes
    self.path = path
    self.what = what
  }

  /// A number token: its byte range and whether it is a plain integer (no fraction, no exponent).
  struct NumberToken {
    var start: Int
    var end: Int
    var isInteger: Bool
    var isNegative: Bool
  }

  func failure(_ message: String, at offset: Int? = nil) -> CheckpointError {
    CheckpointError(.invalidFormat, path: path, "invalid JSON \(what) at byte \(offset ?? position): \(message)")
  }

  mutating func skipWhitespace() {
    while position < bytes.count {
      switch bytes[position] {
      case 0x20, 0x09, 0x0A, 0x0D: position += 1
      default: return
      }
    }
  }

  /// The next non-whitespace byte, not consumed; nil at the end.
  mutating func peek() -> UInt8? {
    skipWhitespace()
    return position < bytes.count ? bytes[position] : nil
  }

  /// Consumes `byte` (after whitespace) if it is next.
  mutating func consume(_ byte: UInt8) -> Bool {
    guard peek() == byte else { return false }
    position += 1
    return true
  }

  /// Consumes `byte` or throws, describing what was expected.
  mutating func expect(_ byte: UInt8, _ expected: String) throws {
    guard consume(byte) else { throw failure("expected \(expected)\(foundDescription())") }
  }

  /// ", found 'x'" or ", found end of input", for messages.
  mutating func foundDescription() -> String {
    guard let next = peek() else { return ", found end of input" }
    if next >= 0x20 && next < 0x7F { return ", found '\(Character(Unicode.Scalar(next)))'" }
    return ", found byte 0x\(String(next, radix: 16))"
  }

  /// Requires that only whitespace is left.
  mutating func finish() throws {
    if peek() != nil { throw failure("unexpected data after the end of the document") }
  }

  /// Parses a string; `position` must be at (or whitespace before) its opening quote.
  mutating func parseString() throws -> String {
    guard consume(0x22) else { throw failure("expected a string\(foundDescription())") }
    let start = position
    var index = start
    while index < bytes.count {
      let byte = bytes[index]
      if byte == 0x22 {
        position = index + 1
        return try makeString(UnsafeRawBufferPointer(rebasing: bytes[start..<index]), at: start)
      }
      if byte == 0x5C {
        var decoded = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        position = index
        return try parseEscapedTail(into: &decoded, stringStart: start)
      }
      if byte < 0x20 { throw failure("control character in a string", at: index) }
      index += 1
    }
    throw failure("unterminated string", at: start - 1)
  }

  private func makeString(_ raw: some Sequence<UInt8>, at start: Int) throws -> String {
    guard let string = String(validating: raw, as: UTF8.self) else {
      throw failure("string is not valid UTF-8", at: start)
    }
    return string
  }

  /// The rest of a string that contains escapes; `position` is at the first backslash.
  private mutating func parseEscapedTail(into decoded: inout [UInt8], stringStart: Int) throws -> String {
    while position < bytes.count {
      let byte = bytes[position]
      switch byte {
      case 0x22:
        position += 1
        return try makeString(decoded, at: stringStart)
      case 0x5C:
        try parseEscape(into: &decoded)
      case 0..<0x20:
        throw failure("control character in a string")
      default:
        decoded.append(byte)
        position += 1
      }
    }
    throw failure("unterminated string", at: stringStart - 1)
  }

  private mutating func parseEscape(into decoded: inout [UInt8]) throws {
    let escapeStart = position
    guard position + 1 < bytes.count else { throw failure("unterminated escape") }
    let kind = bytes[position + 1]
    position += 2
    switch kind {
    case 0x22, 0x5C, 0x2F: decoded.append(kind)
    case 0x62: decoded.append(0x08)
    case 0x66: decoded.append(0x0C)
    case 0x6E: decoded.append(0x0A)
    case 0x72: decoded.append(0x0D)
    case 0x74: decoded.append(0x09)
    case 0x75:
      var scalar = UInt32(try parseHex4())
      if (0xD800..<0xDC00).contains(scalar) {
        guard position + 1 < bytes.count, bytes[position] == 0x5C, bytes[position + 1] == 0x75 else {
          throw failure("lone leading surrogate in a \\u escape", at: escapeStart)
        }
        position += 2
        let low = UInt32(try parseHex4())
        guard (0xDC00..<0xE000).contains(low) else {
          throw failure("leading surrogate not followed by a trailing surrogate", at: escapeStart)
        }
        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
      } else if (0xDC00..<0xE000).contains(scalar) {
        throw failure("lone trailing surrogate in a \\u escape", at: escapeStart)
      }
      JSONScanner.appendUTF8(scalar, to: &decoded)
    default:
      throw failure("invalid escape", at: escapeStart)
    }
  }

  private mutating func parseHex4() throws -> UInt16 {
    guard position + 4 <= bytes.count else { throw failure("truncated \\u escape") }
    var value: UInt16 = 0
    for _ in 0..<4 {
      let byte = bytes[position]
      let digit: UInt8
      switch byte {
      case 0x30...0x39: digit = byte - 0x30
      case 0x41...0x46: digit = byte - 0x41 + 10
      case 0x61...0x66: digit = byte - 0x61 + 10
      default: throw failure("invalid hex digit in a \\u escape")
      }
      value = value << 4 | UInt16(digit)
      position += 1
    }
    return value
  }

  static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
    switch scalar {
    case 0..<0x80:
      out.append(UInt8(scalar))
    case 0x80..<0x800:
      out.append(UInt8(0xC0 | scalar >> 6))
      out.append(UInt8(0x80 | scalar & 0x3F))
    case 0x800..<0x10000:
      out.append(UInt8(0xE0 | scalar >> 12))
      out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
      out.append(UInt8(0x80 | scalar & 0x3F))
    default:
      out.append(UInt8(0xF0 | scalar >> 18))
      out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
      out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
      out.append(UInt8(0x80 | scalar & 0x3F))
    }
  }

  /// Scans a number by the JSON grammar `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
  mutating func scanNumber() throws -> NumberToken {
    skipWhitespace()
    let start = position
    var token = NumberToken(start: start, end: start, isInteger: true, isNegative: false)
    if position < bytes.count && bytes[position] == 0x2D {
      token.isNegative = true
      position += 1
    }
    guard position < bytes.count, isDigit(bytes[position]) else { throw failure("invalid number", at: start) }
    if bytes[position] == 0x30 {
      position += 1
      if position < bytes.count && isDigit(bytes[position]) {
        throw failure("leading zero in a number", at: start)
      }
    } else {
      skipDigits()
    }
    if position < bytes.count && bytes[position] == 0x2E {
      token.isInteger = false
      position += 1
      guard position < bytes.count, isDigit(bytes[position]) else { throw failure("invalid fraction", at: start) }
      skipDigits()
    }
    if position < bytes.count && (bytes[position] == 0x65 || bytes[position] == 0x45) {
      token.isInteger = false
      position += 1
      if position < bytes.count && (bytes[position] == 0x2B || bytes[position] == 0x2D) { position += 1 }
      guard position < bytes.count, isDigit(bytes[position]) else { throw failure("invalid exponent", at: start) }
      skipDigits()
    }
    token.end = position
    return token
  }

  /// The value of an integer token, or nil if it does not fit in `Int` (overflow-checked).
  func integerValue(_ token: NumberToken) -> Int? {
    guard token.isInteger else { return nil }
    var value = 0
    for index in (token.isNegative ? token.start + 1 : token.start)..<token.end {
      let digit = Int(bytes[index] - 0x30)
      let (times10, o1) = value.multipliedReportingOverflow(by: 10)
      let (next, o2) =
        token.isNegative ? times10.subtractingReportingOverflow(digit) : times10.addingReportingOverflow(digit)
      if o1 || o2 { return nil }
      value = next
    }
    return value
  }

  /// The literal text of a token.
  func text(_ token: NumberToken) -> String {
    String(decoding: UnsafeRawBufferPointer(rebasing: bytes[token.start..<token.end]), as: UTF8.self)
  }

  private func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

  private mutating func skipDigits() {
    while position < bytes.count && isDigit(bytes[position]) { position += 1 }
  }

  /// Consumes the literal `word` (`true`, `false`, `null`) or throws.
  mutating func expectLiteral(_ word: StaticString) throws {
    let start = position
    let count = word.utf8CodeUnitCount
    guard position + count <= bytes.count else { throw failure("invalid literal", at: start) }
    for index in 0..<count where bytes[position + index] != word.utf8Start[index] {
      throw failure("invalid literal", at: start)
    }
    position += count
  }
}
