import Foundation

/// A parsed JSON document that keeps integers, floats and booleans apart, and writes itself the way
/// Python's `json.dumps(obj, indent=2, sort_keys=True)` does (which is how transformers writes index files).
public indirect enum JSONValue: Sendable, Equatable, Codable {
  case null
  case bool(Bool)
  case int(Int64)
  case double(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Int64.self) {
      self = .int(value)
    } else if let value = try? container.decode(Double.self) {
      self = .double(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode([JSONValue].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: JSONValue].self))
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    switch self {
    case .null: try container.encodeNil()
    case .bool(let value): try container.encode(value)
    case .int(let value): try container.encode(value)
    case .double(let value): try container.encode(value)
    case .string(let value): try container.encode(value)
    case .array(let value): try container.encode(value)
    case .object(let value): try container.encode(value)
    }
  }

  /// Parses JSON bytes.
  public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
    try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
  }

  /// The object's members, if this is an object.
  public var object: [String: JSONValue]? {
    if case .object(let members) = self { return members }
    return nil
  }

  /// The string, if this is a string.
  public var string: String? {
    if case .string(let value) = self { return value }
    return nil
  }

  /// Python `json.dumps(self, indent=2, sort_keys=True)` (ASCII only, `\uXXXX` escapes), no newline.
  public func pythonDumps(indent: Int = 2) -> String {
    var out = ""
    write(into: &out, level: 0, indent: indent)
    return out
  }

  private func write(into out: inout String, level: Int, indent: Int) {
    switch self {
    case .null: out += "null"
    case .bool(let value): out += value ? "true" : "false"
    case .int(let value): out += String(value)
    case .double(let value):
      if value.isNaN {
        out += "NaN"
      } else if value.isInfinite {
        out += value < 0 ? "-Infinity" : "Infinity"
      } else {
        out += "\(value)"
      }
    case .string(let value): JSONValue.writeString(value, into: &out)
    case .array(let items):
      if items.isEmpty {
        out += "[]"
        return
      }
      out += "["
      for (position, item) in items.enumerated() {
        out += position == 0 ? "\n" : ",\n"
        out += String(repeating: " ", count: (level + 1) * indent)
        item.write(into: &out, level: level + 1, indent: indent)
      }
      out += "\n" + String(repeating: " ", count: level * indent) + "]"
    case .object(let members):
      if members.isEmpty {
        out += "{}"
        return
      }
      out += "{"
      let keys = members.keys.sorted {
        Array($0.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.unicodeScalars.map(\.value))
      }
      for (position, key) in keys.enumerated() {
        out += position == 0 ? "\n" : ",\n"
        out += String(repeating: " ", count: (level + 1) * indent)
        JSONValue.writeString(key, into: &out)
        out += ": "
        members[key, default: .null].write(into: &out, level: level + 1, indent: indent)
      }
      out += "\n" + String(repeating: " ", count: level * indent) + "}"
    }
  }

  private static func writeString(_ value: String, into out: inout String) {
    out += "\""
    for unit in value.utf16 {
      switch unit {
      case 0x22: out += "\\\""
      case 0x5C: out += "\\\\"
      case 0x0A: out += "\\n"
      case 0x0D: out += "\\r"
      case 0x09: out += "\\t"
      case 0x08: out += "\\b"
      case 0x0C: out += "\\f"
      case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(UInt8(unit)))
      default:
        let hex = String(unit, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      }
    }
    out += "\""
  }
}
