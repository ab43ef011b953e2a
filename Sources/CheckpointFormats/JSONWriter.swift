/// Compact JSON output, byte-compatible with `serde_json::to_string` (what the safetensors writer uses):
/// no spaces, non-ASCII written as raw UTF-8, `"` and `\` escaped, control characters as `\b \t \n \f \r`
/// or lowercase `\u00xx`, `/` and DEL left alone.
public enum JSONWriter {
  static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

  /// The letter after `\` for the characters both writers escape short (`\"`, `\\`, `\b`, `\t`, `\n`,
  /// `\f`, `\r`); nil for every other character.
  static func shortEscape(_ unit: UInt16) -> UInt8? {
    switch unit {
    case 0x22: 0x22
    case 0x5C: 0x5C
    case 0x08: 0x62
    case 0x09: 0x74
    case 0x0A: 0x6E
    case 0x0C: 0x66
    case 0x0D: 0x72
    default: nil
    }
  }

  /// Appends `string` as a quoted, escaped JSON string.
  public static func appendString(_ string: String, to out: inout [UInt8]) {
    out.append(0x22)
    for byte in string.utf8 {
      if let letter = shortEscape(UInt16(byte)) {
        out.append(contentsOf: [0x5C, letter])
        continue
      }
      switch byte {
      case 0..<0x20:
        out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
      default: out.append(byte)
      }
    }
    out.append(0x22)
  }

  /// Appends an integer in decimal.
  public static func appendInteger(_ value: Int, to out: inout [UInt8]) {
    out.append(contentsOf: String(value).utf8)
  }

  /// Appends `value` compactly. `.number` literals are written verbatim.
  public static func append(_ value: JSONValue, to out: inout [UInt8]) {
    switch value {
    case .null: out.append(contentsOf: "null".utf8)
    case .bool(let flag): out.append(contentsOf: (flag ? "true" : "false").utf8)
    case .integer(let number): appendInteger(number, to: &out)
    case .number(let literal): out.append(contentsOf: literal.utf8)
    case .string(let string): appendString(string, to: &out)
    case .array(let elements):
      out.append(0x5B)
      for (index, element) in elements.enumerated() {
        if index > 0 { out.append(0x2C) }
        append(element, to: &out)
      }
      out.append(0x5D)
    case .object(let members):
      out.append(0x7B)
      for (index, member) in members.enumerated() {
        if index > 0 { out.append(0x2C) }
        appendString(member.key, to: &out)
        out.append(0x3A)
        append(member.value, to: &out)
      }
      out.append(0x7D)
    }
  }
}

extension JSONValue {
  /// The compact JSON encoding of this value (see `JSONWriter`).
  public func encoded() -> [UInt8] {
    var out: [UInt8] = []
    JSONWriter.append(self, to: &out)
    return out
  }

  /// The compact JSON encoding as a string.
  public var jsonString: String { String(decoding: encoded(), as: UTF8.self) }
}

extension JSONWriter {
  /// Appends `value` the way Python's `json.dumps(value, indent: indent)` writes it (what transformers and
  /// huggingface_hub use for `*.index.json`): one member or element per line, `", "`-free separators
  /// (`","` at line ends, `": "` between key and value), empty containers as `{}` and `[]`, and, with
  /// `asciiOnly` (Python's default `ensure_ascii=True`), every non-ASCII character and DEL as a lowercase
  /// `\uxxxx` escape (surrogate pairs above U+FFFF).
  public static func appendIndented(
    _ value: JSONValue, indent: Int, asciiOnly: Bool = true, level: Int = 0, to out: inout [UInt8]
  ) {
    func newline(_ depth: Int) {
      out.append(0x0A)
      out.append(contentsOf: repeatElement(0x20, count: indent * depth))
    }
    switch value {
    case .string(let string):
      if asciiOnly { appendASCIIString(string, to: &out) } else { appendString(string, to: &out) }
    case .array(let elements) where !elements.isEmpty:
      out.append(0x5B)
      for (index, element) in elements.enumerated() {
        if index > 0 { out.append(0x2C) }
        newline(level + 1)
        appendIndented(element, indent: indent, asciiOnly: asciiOnly, level: level + 1, to: &out)
      }
      newline(level)
      out.append(0x5D)
    case .object(let members) where !members.isEmpty:
      out.append(0x7B)
      for (index, member) in members.enumerated() {
        if index > 0 { out.append(0x2C) }
        newline(level + 1)
        if asciiOnly { appendASCIIString(member.key, to: &out) } else { appendString(member.key, to: &out) }
        out.append(contentsOf: [0x3A, 0x20])
        appendIndented(member.value, indent: indent, asciiOnly: asciiOnly, level: level + 1, to: &out)
      }
      newline(level)
      out.append(0x7D)
    default:
      append(value, to: &out)
    }
  }

  /// A quoted string with everything outside printable ASCII escaped, as Python's `ensure_ascii=True`.
  public static func appendASCIIString(_ string: String, to out: inout [UInt8]) {
    func hex4(_ unit: UInt16) {
      out.append(contentsOf: [0x5C, 0x75])
      for shift in stride(from: 12, through: 0, by: -4) { out.append(hexDigits[Int(unit >> UInt16(shift) & 0xF)]) }
    }
    out.append(0x22)
    for unit in string.utf16 {
      if let letter = shortEscape(unit) {
        out.append(contentsOf: [0x5C, letter])
        continue
      }
      switch unit {
      case 0x20..<0x7F: out.append(UInt8(unit))
      default: hex4(unit)
      }
    }
    out.append(0x22)
  }
}

extension JSONValue {
  /// The encoding Python's `json.dumps(self, indent: indent)` produces (see `JSONWriter.appendIndented`);
  /// no trailing newline.
  public func encoded(indent: Int, asciiOnly: Bool = true) -> [UInt8] {
    var out: [UInt8] = []
    JSONWriter.appendIndented(self, indent: indent, asciiOnly: asciiOnly, to: &out)
    return out
  }
}
