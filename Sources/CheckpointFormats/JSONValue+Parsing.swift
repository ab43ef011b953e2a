extension JSONValue {
  /// The nesting depth `parse` accepts unless told otherwise.
  public static let defaultMaxDepth = 64

  /// Parses one JSON document (RFC 8259, strict): strings must be valid UTF-8, duplicate object keys are
  /// refused, nesting deeper than `maxDepth` is refused, and only whitespace may follow the value.
  ///
  /// - Parameters:
  ///   - bytes: the document.
  ///   - path: the file it came from, named in errors.
  ///   - what: what the document is, named in errors ("index", "config").
  /// - Throws: `CheckpointError(.invalidFormat)` with the byte position and the reason.
  public static func parse(
    _ bytes: [UInt8], path: String = "", what: String = "document", maxDepth: Int = defaultMaxDepth
  ) throws -> JSONValue {
    try bytes.withUnsafeBytes { raw in
      var scanner = JSONScanner(bytes: raw, path: path, what: what)
      let value = try scanner.parseValue(depth: 1, maxDepth: maxDepth)
      try scanner.finish()
      return value
    }
  }
}

extension JSONScanner {
  /// Parses any value; `depth` counts the arrays and objects that enclose it, itself included.
  mutating func parseValue(depth: Int, maxDepth: Int) throws -> JSONValue {
    guard let next = peek() else { throw failure("expected a value, found end of input") }
    switch next {
    case 0x7B:
      guard depth <= maxDepth else { throw failure("nesting deeper than \(maxDepth) levels") }
      return try parseObject(depth: depth, maxDepth: maxDepth)
    case 0x5B:
      guard depth <= maxDepth else { throw failure("nesting deeper than \(maxDepth) levels") }
      return try parseArray(depth: depth, maxDepth: maxDepth)
    case 0x22:
      return .string(try parseString())
    case 0x74:
      try expectLiteral("true")
      return .bool(true)
    case 0x66:
      try expectLiteral("false")
      return .bool(false)
    case 0x6E:
      try expectLiteral("null")
      return .null
    case 0x2D, 0x30...0x39:
      let token = try scanNumber()
      if let value = integerValue(token) { return .integer(value) }
      return .number(text(token))
    default:
      throw failure("expected a value\(foundDescription())")
    }
  }

  private mutating func parseArray(depth: Int, maxDepth: Int) throws -> JSONValue {
    try expect(0x5B, "'['")
    var elements: [JSONValue] = []
    if consume(0x5D) { return .array(elements) }
    repeat {
      elements.append(try parseValue(depth: depth + 1, maxDepth: maxDepth))
    } while consume(0x2C)
    try expect(0x5D, "',' or ']'")
    return .array(elements)
  }

  private mutating func parseObject(depth: Int, maxDepth: Int) throws -> JSONValue {
    try expect(0x7B, "'{'")
    var members: [JSONMember] = []
    var seen: Set<String> = []
    if consume(0x7D) { return .object(members) }
    repeat {
      let keyStart = position
      let key = try parseString()
      guard seen.insert(key).inserted else { throw failure("duplicate key \"\(key)\"", at: keyStart) }
      try expect(0x3A, "':'")
      members.append(JSONMember(key, try parseValue(depth: depth + 1, maxDepth: maxDepth)))
    } while consume(0x2C)
    try expect(0x7D, "',' or '}'")
    return .object(members)
  }
}
