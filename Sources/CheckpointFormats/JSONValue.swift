/// A JSON document as a small tree: what `JSONValue.parse` produces and `encoded()` writes back.
///
/// Numbers keep their meaning without going through `Double`: integers that fit in `Int` are `.integer`;
/// every other number (fraction, exponent, or too large) is `.number` holding its literal text.
/// Objects keep their members in document order; the parser refuses duplicate keys.
public enum JSONValue: Sendable, Hashable {
  case null
  case bool(Bool)
  case integer(Int)
  /// A number that is not an `Int`, as its JSON literal (for example `"1.5e3"`). Written back verbatim.
  case number(String)
  case string(String)
  case array([JSONValue])
  case object([JSONMember])

  /// The string, if this is a string.
  public var stringValue: String? {
    if case .string(let value) = self { return value }
    return nil
  }

  /// The integer, if this is an integer that fits in `Int`.
  public var intValue: Int? {
    if case .integer(let value) = self { return value }
    return nil
  }

  /// The elements, if this is an array.
  public var arrayValue: [JSONValue]? {
    if case .array(let value) = self { return value }
    return nil
  }

  /// The members in document order, if this is an object.
  public var objectValue: [JSONMember]? {
    if case .object(let value) = self { return value }
    return nil
  }

  /// The value of the first member named `key`, if this is an object that has one.
  public subscript(key: String) -> JSONValue? {
    guard case .object(let members) = self else { return nil }
    return members.first(where: { $0.key == key })?.value
  }

  /// Builds an object from a dictionary, members sorted by key (byte order) for deterministic output.
  public static func sortedObject(_ dictionary: [String: JSONValue]) -> JSONValue {
    let members = dictionary.map { JSONMember($0.key, $0.value) }
    return .object(members.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) })
  }
}

/// One `"key": value` member of a JSON object.
public struct JSONMember: Sendable, Hashable {
  public var key: String
  public var value: JSONValue

  public init(_ key: String, _ value: JSONValue) {
    self.key = key
    self.value = value
  }
}
