import Testing

@testable import CheckpointFormats

/// One hand-crafted file that breaks one rule, and what the reader must say about it.
struct HostileSafetensors: Sendable, CustomTestStringConvertible {
  var label: String
  var bytes: [UInt8]
  var code: CheckpointError.Code
  /// A fragment the message must contain.
  var fragment: String
  var testDescription: String { label }

  init(_ label: String, _ bytes: [UInt8], _ code: CheckpointError.Code, _ fragment: String) {
    self.label = label
    self.bytes = bytes
    self.code = code
    self.fragment = fragment
  }

  init(_ label: String, json: String, data: [UInt8] = [], _ code: CheckpointError.Code, _ fragment: String) {
    self.init(label, SafetensorsFixture.file(json: json, data: data), code, fragment)
  }

  static func lengthPrefix(_ value: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
  }

  static func entry(_ name: String, _ dtype: String = "U8", _ shape: String = "[4]", offsets: String) -> String {
    #""\#(name)":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":\#(offsets)}"#
  }

  static let rank65 = "[" + Array(repeating: "1", count: 65).joined(separator: ",") + "]"

  static let all: [HostileSafetensors] = [
    .init("file shorter than the length prefix", [1, 0, 0], .truncated, "8-byte header length"),
    .init("header too large", lengthPrefix(100_000_001) + Array("{}".utf8), .limitExceeded, "100000000"),
    .init("header length near UInt64.max", lengthPrefix(.max) + [0x7B], .limitExceeded, "exceeds"),
    .init("header past EOF", lengthPrefix(100) + Array("{}".utf8), .truncated, "header says 100 bytes but file has 10"),
    .init("empty header", json: "", .invalidFormat, "header"),
    .init("bad JSON: unterminated", json: #"{"a":"#, .invalidFormat, "tensor 'a'"),
    .init("bad JSON: unterminated string", json: #"{"a"#, .invalidFormat, "unterminated string"),
    .init("bad JSON: missing colon", json: #"{"a" 1}"#, .invalidFormat, "expected ':'"),
    .init("bad JSON: trailing comma", json: #"{"__metadata__":{},}"#, .invalidFormat, "invalid JSON header"),
    .init("bad JSON: not an object", json: "[]", .invalidFormat, "must be a JSON object"),
    .init("bad JSON: garbage after the object", json: "{} x", .invalidFormat, "after the end"),
    .init("bad JSON: single quotes", json: "{'a':1}", .invalidFormat, "invalid JSON header"),
    .init("metadata value not a string", json: #"{"__metadata__":{"k":1}}"#, .invalidFormat, "not a string"),
    .init("metadata value null", json: #"{"__metadata__":{"k":null}}"#, .invalidFormat, "not a string"),
    .init("metadata not an object", json: #"{"__metadata__":"pt"}"#, .invalidFormat, "__metadata__ must be"),
    .init("metadata twice", json: #"{"__metadata__":{},"__metadata__":{}}"#, .invalidFormat, "more than one"),
    .init("metadata duplicate key", json: #"{"__metadata__":{"a":"1","a":"2"}}"#, .invalidFormat, "duplicate key"),
    .init("unknown dtype", json: "{\(entry("w", "F33", "[1]", offsets: "[0,1]"))}", data: [0], .invalidFormat, "F33"),
    .init(
      "dtype ckptd cannot carry", json: "{\(entry("w", "F8_E8M0", "[1]", offsets: "[0,1]"))}", data: [0], .unsupported,
      "F8_E8M0"),
    .init(
      "dtype not a string", json: #"{"w":{"dtype":7,"shape":[1],"data_offsets":[0,1]}}"#, data: [0], .invalidFormat,
      "dtype must be a string"),
    .init(
      "negative shape", json: "{\(entry("w", "U8", "[-1]", offsets: "[0,0]"))}", .invalidFormat,
      "non-negative integers, found -1"),
    .init(
      "float shape", json: "{\(entry("w", "U8", "[1.0]", offsets: "[0,1]"))}", data: [0], .invalidFormat, "found 1.0"),
    .init(
      "exponent shape", json: "{\(entry("w", "U8", "[1e0]", offsets: "[0,1]"))}", data: [0], .invalidFormat, "found 1e0"
    ),
    .init(
      "string shape", json: "{\(entry("w", "U8", #"["1"]"#, offsets: "[0,1]"))}", data: [0], .invalidFormat,
      "shape must be"),
    .init(
      "shape not a list", json: "{\(entry("w", "U8", "4", offsets: "[0,4]"))}", data: [0, 0, 0, 0], .invalidFormat,
      "shape must be"),
    .init(
      "absurd rank", json: "{\(entry("w", "U8", rank65, offsets: "[0,1]"))}", data: [0], .limitExceeded, "more than 64"),
    .init(
      "span mismatch", json: "{\(entry("w", "F32", "[2]", offsets: "[0,4]"))}", data: [0, 0, 0, 0], .invalidFormat,
      "needs 8 bytes"),
    .init(
      "overflowing shape", json: "{\(entry("w", "F32", "[4611686018427387904,4]", offsets: "[0,0]"))}", .limitExceeded,
      "overflows"),
    .init(
      "overflowing shape behind a zero",
      json: "{\(entry("w", "F32", "[0,4611686018427387904,4611686018427387904]", offsets: "[0,0]"))}", .limitExceeded,
      "overflows"),
    .init(
      "number beyond Int64", json: "{\(entry("w", "U8", "[99999999999999999999]", offsets: "[0,0]"))}", .limitExceeded,
      "too large"),
    .init(
      "offset beyond Int64", json: "{\(entry("w", "U8", "[1]", offsets: "[0,18446744073709551617]"))}", .limitExceeded,
      "too large"),
    .init(
      "first tensor not at 0", json: "{\(entry("w", "U8", "[4]", offsets: "[4,8]"))}",
      data: [UInt8](repeating: 0, count: 8), .invalidFormat, "hole"),
    .init(
      "hole", json: "{\(entry("a", offsets: "[0,4]")),\(entry("b", offsets: "[8,12]"))}",
      data: [UInt8](repeating: 0, count: 12), .invalidFormat, "hole"),
    .init(
      "overlap", json: "{\(entry("a", offsets: "[0,4]")),\(entry("b", offsets: "[2,6]"))}",
      data: [UInt8](repeating: 0, count: 6), .invalidFormat, "overlap"),
    .init(
      "end before begin", json: "{\(entry("w", "U8", "[0]", offsets: "[4,0]"))}", .invalidFormat,
      "end before they begin"),
    .init(
      "data_offsets with three entries", json: "{\(entry("w", "U8", "[1]", offsets: "[0,1,1]"))}", data: [0],
      .limitExceeded, "more than 2"),
    .init(
      "data_offsets with one entry", json: "{\(entry("w", "U8", "[1]", offsets: "[1]"))}", data: [0], .invalidFormat,
      "[begin, end]"),
    .init(
      "trailing bytes", json: "{\(entry("w", offsets: "[0,4]"))}", data: [1, 2, 3, 4, 5], .invalidFormat,
      "1 trailing bytes"),
    .init("truncated data", json: "{\(entry("w", offsets: "[0,4]"))}", data: [1], .truncated, "3 bytes missing"),
    .init(
      "duplicate name", json: "{\(entry("w", offsets: "[0,4]")),\(entry("w", offsets: "[4,8]"))}",
      data: [UInt8](repeating: 0, count: 8), .invalidFormat, "duplicate tensor name 'w'"),
    .init("missing field", json: #"{"w":{"dtype":"U8","shape":[0]}}"#, .invalidFormat, "missing data_offsets"),
    .init(
      "extra field", json: #"{"w":{"dtype":"U8","shape":[0],"data_offsets":[0,0],"x":1}}"#, .invalidFormat,
      "unexpected field 'x'"),
    .init(
      "duplicate field", json: #"{"w":{"dtype":"U8","dtype":"U8","shape":[0],"data_offsets":[0,0]}}"#, .invalidFormat,
      "duplicate field"),
    .init("entry not an object", json: #"{"w":[0,0]}"#, .invalidFormat, "entry must be an object"),
    .init(
      "invalid UTF-8 name (0xFF)",
      SafetensorsFixture.file(
        header: Array(#"{""#.utf8) + [0xFF] + Array(#"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}"#.utf8)),
      .invalidFormat, "not valid UTF-8"),
    .init(
      "invalid UTF-8 name (overlong '/')",
      SafetensorsFixture.file(
        header: Array(#"{"a"#.utf8) + [0xC0, 0xAF] + Array(#"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}"#.utf8)),
      .invalidFormat, "not valid UTF-8"),
    .init(
      "invalid UTF-8 name (encoded surrogate)",
      SafetensorsFixture.file(
        header: Array(#"{""#.utf8) + [0xED, 0xA0, 0x80]
          + Array(#"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}"#.utf8)), .invalidFormat, "not valid UTF-8"),
    .init(
      "lone surrogate escape in a name", json: #"{"\ud800":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}"#,
      .invalidFormat, "surrogate"),
    .init(
      "control character in a name", json: "{\"a\u{1}\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
      .invalidFormat, "control character"),
    .init(
      "deep nesting in an entry", json: #"{"w":"# + String(repeating: "[", count: 100_000), .invalidFormat,
      "entry must be an object"),
    .init(
      "deep nesting in metadata", json: #"{"__metadata__":{"k":"# + String(repeating: "{\"k\":", count: 100_000),
      .invalidFormat, "not a string"),
    .init(
      "deep nesting in a shape", json: #"{"w":{"dtype":"U8","shape":"# + String(repeating: "[", count: 100_000),
      .invalidFormat, "shape must be"),
  ]
}

@Suite struct SafetensorsValidationTests {
  @Test(arguments: HostileSafetensors.all)
  func refuses(_ fixture: HostileSafetensors) throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let path = try SafetensorsFixture.writeFile(fixture.bytes, in: directory)
    let error = #expect(throws: CheckpointError.self) { try SafetensorsReader.read(path: path) }
    #expect(error?.code == fixture.code, "\(error?.description ?? "")")
    #expect(error?.path == path)
    #expect(error?.description.hasPrefix(path + ": ") == true)
    #expect(error?.message.contains(fixture.fragment) == true, "\(error?.description ?? "")")
    #expect(error?.message.contains("\n") == false)
  }

  @Test func headerOfExactlyTheLimitIsNotRefusedForItsSize() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    // Only the prefix: the limit itself is accepted, so the failure is the missing header bytes.
    let path = try SafetensorsFixture.writeFile(
      HostileSafetensors.lengthPrefix(UInt64(SafetensorsReader.maxHeaderSize)) + Array("{}".utf8), in: directory)
    let error = #expect(throws: CheckpointError.self) { try SafetensorsReader.read(path: path) }
    #expect(error?.code == .truncated)
  }

  @Test func acceptsUnalignedHeaderAnyMemberOrderAndZeroSizedTensors() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let json =
      " \t\n{\"b\":{\"shape\":[2],\"data_offsets\":[4,6],\"dtype\":\"U8\"},"
      + #""e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]},"#
      + #""a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},"#
      + #""__metadata__":{"k":"v\u00e9\ud83d\ude00"},"s":{"dtype":"F64","shape":[],"data_offsets":[6,14]}}  "#
    #expect(json.utf8.count % 8 != 0)
    let data: [UInt8] = Array(0..<14)
    let path = try SafetensorsFixture.writeFile(SafetensorsFixture.file(json: json, data: data), in: directory)
    let dict = try SafetensorsReader.read(path: path)
    #expect(dict.tensors.map(\.name) == ["a", "e", "b", "s"])
    #expect(dict.metadata == ["k": "vé😀"])
    let headerEnd = Int64(8 + json.utf8.count)
    #expect(dict.storages["b"] == StorageInfo(key: "b", dtype: .u8, fileOffset: headerEnd + 4, byteCount: 2))
    let b = try #require(dict.tensors.first { $0.name == "b" })
    #expect(try SafetensorsFixture.bytes(of: b, in: dict) == [4, 5])
    let s = try #require(dict.tensors.first { $0.name == "s" })
    #expect(s.shape == [])
    #expect(try SafetensorsFixture.bytes(of: s, in: dict) == Array(6..<14))
  }

  @Test func emptyHeaderObjectIsAValidEmptyFile() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let path = try SafetensorsFixture.writeFile(SafetensorsFixture.file(json: "{}"), in: directory)
    let dict = try SafetensorsReader.read(path: path)
    #expect(dict.tensors.isEmpty)
    #expect(dict.metadata.isEmpty)
  }

  @Test func expectedFileSizeWorksWhileDataIsStillMissing() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let json = #"{"w":{"dtype":"F32","shape":[10],"data_offsets":[0,40]}}"#
    let path = try SafetensorsFixture.writeFile(SafetensorsFixture.file(json: json, data: [1, 2]), in: directory)
    #expect(try SafetensorsReader.expectedFileSize(path: path) == Int64(8 + json.utf8.count + 40))
    let error = #expect(throws: CheckpointError.self) { try SafetensorsReader.read(path: path) }
    #expect(error?.code == .truncated)
    #expect(error?.message.contains("38 bytes missing") == true)
  }
}
