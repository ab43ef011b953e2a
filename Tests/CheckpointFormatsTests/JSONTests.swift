import Testing

@testable import CheckpointFormats

@Suite struct JSONParsingTests {
  private func parse(_ text: String, maxDepth: Int = JSONValue.defaultMaxDepth) throws -> JSONValue {
    try JSONValue.parse(Array(text.utf8), path: "doc.json", maxDepth: maxDepth)
  }

  @Test func parsesEveryKindOfValue() throws {
    let value = try parse(
      #" {"a": [1, -2, 0, 1.5, -0.25e3, 12345678901234567890], "b": {"c": null}, "t": true, "f": false} "#)
    #expect(
      value
        == .object([
          JSONMember(
            "a",
            .array([
              .integer(1), .integer(-2), .integer(0), .number("1.5"), .number("-0.25e3"),
              .number("12345678901234567890"),
            ])),
          JSONMember("b", .object([JSONMember("c", .null)])),
          JSONMember("t", .bool(true)),
          JSONMember("f", .bool(false)),
        ]))
    #expect(value["a"]?.arrayValue?.first?.intValue == 1)
    #expect(value["missing"] == nil)
  }

  @Test func integerLimits() throws {
    #expect(try parse("9223372036854775807") == .integer(Int.max))
    #expect(try parse("-9223372036854775808") == .integer(Int.min))
    #expect(try parse("9223372036854775808") == .number("9223372036854775808"))
  }

  @Test(arguments: [
    (#""a\"b\\c\/d\b\f\n\r\t""#, "a\"b\\c/d\u{8}\u{c}\n\r\t"),
    (#""\u00e9\u4e2d""#, "é中"),
    (#""\ud83d\ude00 smile""#, "😀 smile"),
    (#""raw é 中 😀""#, "raw é 中 😀"),
    (#""\u0000""#, "\u{0}"),
  ])
  func decodesStrings(json: String, expected: String) throws {
    #expect(try parse(json) == .string(expected))
  }

  @Test(arguments: [
    (#""\ud800""#, "lone leading surrogate"),
    (#""\udc00""#, "lone trailing surrogate"),
    (#""\ud800\u0041""#, "not followed by a trailing surrogate"),
    (#""\x""#, "invalid escape"),
    (#""\u12g4""#, "invalid hex digit"),
    (#""abc"#, "unterminated string"),
    ("\"a\u{1}\"", "control character"),
    ("01", "leading zero"),
    ("1.", "invalid fraction"),
    ("1e", "invalid exponent"),
    ("-", "invalid number"),
    ("+1", "expected a value"),
    ("tru", "invalid literal"),
    ("nul", "invalid literal"),
    (#"{"a":1,"a":2}"#, "duplicate key"),
    ("[1,]", "expected a value"),
    ("[1 2]", "expected ',' or ']'"),
    ("{} {}", "after the end"),
    ("", "expected a value"),
    ("NaN", "expected a value"),
  ])
  func refusesMalformed(json: String, fragment: String) throws {
    let error = #expect(throws: CheckpointError.self) { try parse(json) }
    #expect(error?.code == .invalidFormat)
    #expect(error?.path == "doc.json")
    #expect(error?.message.contains(fragment) == true, "\(error?.message ?? "")")
  }

  @Test(arguments: [[0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE4, 0xB8]] as [[UInt8]])
  func refusesInvalidUTF8(bytes: [UInt8]) throws {
    let document: [UInt8] = [0x22] + bytes + [0x22]
    let error = #expect(throws: CheckpointError.self) { try JSONValue.parse(document, path: "doc.json") }
    #expect(error?.message.contains("not valid UTF-8") == true)
    // The same bytes after an escape take the slow path and must be refused too.
    let escaped: [UInt8] = Array(#""\n"#.utf8) + bytes + [0x22]
    #expect(throws: CheckpointError.self) { try JSONValue.parse(escaped, path: "doc.json") }
  }

  @Test(arguments: [8, 64]) func nestingAtTheLimitIsAcceptedBeyondItRefused(limit: Int) throws {
    let atLimit = String(repeating: "[", count: limit) + String(repeating: "]", count: limit)
    #expect(throws: Never.self) { try parse(atLimit, maxDepth: limit) }
    let beyond = String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)
    let error = #expect(throws: CheckpointError.self) { try parse(beyond, maxDepth: limit) }
    #expect(error?.message.contains("nesting deeper than \(limit)") == true)
  }

  @Test func veryDeepNestingIsRefusedWithoutExhaustingTheStack() throws {
    let deep = String(repeating: #"{"a":["#, count: 200_000)
    let error = #expect(throws: CheckpointError.self) { try parse(deep) }
    #expect(error?.message.contains("nesting deeper") == true)
  }
}

@Suite struct JSONWritingTests {
  @Test func escapesLikeSerdeJSON() {
    let value = JSONValue.string("q\"b\\s/\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}é😀")
    #expect(value.jsonString == #""q\"b\\s/\b\f\n\r\t\u0001\u001f"# + "\u{7f}é😀\"")
  }

  @Test func writesCompactly() {
    let value = JSONValue.object([
      JSONMember("a", .array([.integer(-1), .number("2.5"), .null, .bool(true)])),
      JSONMember("b", .object([])),
      JSONMember("c", .array([])),
    ])
    #expect(value.jsonString == #"{"a":[-1,2.5,null,true],"b":{},"c":[]}"#)
  }

  @Test func sortedObjectOrdersKeysByBytes() {
    let value = JSONValue.sortedObject(["é": .integer(1), "b": .integer(2), "Z": .integer(3)])
    #expect(value.jsonString == #"{"Z":3,"b":2,"é":1}"#)
  }

  @Test(arguments: [
    #"{"k":"v","n":[1,2,{"x":null}],"s":"\"\\\n\u0001é"}"#,
    #"[true,false,-0.5e-3,9223372036854775807]"#,
    #""\ud83d\ude00""#,
  ])
  func parseThenWriteIsStable(json: String) throws {
    let value = try JSONValue.parse(Array(json.utf8))
    let again = try JSONValue.parse(value.encoded())
    #expect(again == value)
    #expect(again.encoded() == value.encoded())
  }

  /// Expected outputs were produced by Python 3.11 `json.dumps(value, indent=2)` and
  /// `json.dumps(value, indent=2, ensure_ascii=False)` for the same value.
  @Test(arguments: [true, false]) func indentedMatchesPythonJSONDumps(asciiOnly: Bool) {
    let value = JSONValue.object([
      JSONMember(
        "metadata",
        .object([JSONMember("total_size", .integer(123)), JSONMember("e", .array([])), JSONMember("o", .object([]))])),
      JSONMember(
        "weight_map",
        .object([
          JSONMember("a\u{e9}\u{1F600}\u{7f}\u{1}\"\\/", .string("model-00001-of-00002.safetensors")),
          JSONMember("b", .array([.integer(1), .integer(-2), .bool(true), .null, .string("x")])),
        ])),
    ])
    let key = asciiOnly ? "a\\u00e9\\ud83d\\ude00\\u007f\\u0001\\\"\\\\/" : "a\u{e9}\u{1F600}\u{7f}\\u0001\\\"\\\\/"
    let expected =
      "{\n  \"metadata\": {\n    \"total_size\": 123,\n    \"e\": [],\n    \"o\": {}\n  },\n  \"weight_map\": {\n    \""
      + key
      + "\": \"model-00001-of-00002.safetensors\",\n    \"b\": [\n      1,\n      -2,\n      true,\n      null,\n"
      + "      \"x\"\n    ]\n  }\n}"
    #expect(String(decoding: value.encoded(indent: 2, asciiOnly: asciiOnly), as: UTF8.self) == expected)
  }
}
