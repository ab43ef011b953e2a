import Testing

@testable import CheckpointFormats

@Suite struct SafetensorsRoundTripTests {
  static let shapes: [[Int]] = [[], [0], [1], [3, 5], [2, 0, 4], [1, 2, 1, 2, 1, 2, 1, 2]]

  @Test(arguments: DType.allCases, shapes)
  func roundTrip(dtype: DType, shape: [Int]) throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let count = shape.reduce(1, *) * dtype.byteSize
    let payload = SafetensorsFixture.pattern(count: count, seed: "\(dtype)\(shape)")
    let other = SafetensorsFixture.pattern(count: 12, seed: "other")
    let path = try SafetensorsFixture.write(
      [
        OutputTensor(name: "t", dtype: dtype, shape: shape, source: BytesSource(payload)),
        OutputTensor(name: "u", dtype: .u8, shape: [3, 4], source: BytesSource(other)),
      ], in: directory)
    let dict = try SafetensorsReader.read(path: path)
    #expect(dict.format == .safetensors)
    #expect(dict.formatDetail == "safetensors")
    #expect(dict.tensors.count == 2)
    let tensor = try #require(dict.tensors.first { $0.name == "t" })
    #expect(tensor.dtype == dtype)
    #expect(tensor.shape == shape)
    #expect(tensor.strides == TensorInfo.contiguousStrides(shape))
    #expect(tensor.storageKey == "t")
    #expect(try SafetensorsFixture.bytes(of: tensor, in: dict) == payload)
    let second = try #require(dict.tensors.first { $0.name == "u" })
    #expect(try SafetensorsFixture.bytes(of: second, in: dict) == other)
    #expect(try SafetensorsReader.expectedFileSize(path: path) == dict.file.size)
  }

  @Test func metadataIsKeptAndFormatIsPt() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let metadata = ["zeta": "last", "alpha": "ünïcode \"quoted\"\n", "format": "np"]
    let path = try SafetensorsFixture.write(
      [OutputTensor(name: "w", dtype: .f32, shape: [1], source: BytesSource([0, 0, 128, 63]))],
      metadata: metadata, in: directory)
    let dict = try SafetensorsReader.read(path: path)
    #expect(dict.metadata == ["zeta": "last", "alpha": "ünïcode \"quoted\"\n", "format": "pt"])
    let header = try headerText(path)
    #expect(header.hasPrefix(#"{"__metadata__":{"alpha":"ünïcode \"quoted\"\n","format":"pt","zeta":"last"},"#))
  }

  @Test func formatPtIsAddedToEmptyMetadata() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let path = try SafetensorsFixture.write([], in: directory)
    #expect(try SafetensorsReader.read(path: path).metadata == ["format": "pt"])
    #expect(try headerText(path) == #"{"__metadata__":{"format":"pt"}}"#)
  }

  @Test func orderIsDTypeRankDescendingThenNameBytes() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    // "Z" < "a" < "é" by UTF-8 bytes; F64 ranks above F32 above BF16 above U8.
    let specs: [(String, DType)] = [
      ("é", .f32), ("a", .f32), ("Z", .f32), ("small", .u8), ("big", .f64), ("half", .bf16),
    ]
    let tensors = specs.map { name, dtype in
      OutputTensor(
        name: name, dtype: dtype, shape: [2], source: BytesSource([UInt8](repeating: 1, count: 2 * dtype.byteSize)))
    }
    let path = try SafetensorsFixture.write(tensors, in: directory)
    let dict = try SafetensorsReader.read(path: path)
    #expect(dict.tensors.map(\.name) == ["big", "Z", "a", "é", "half", "small"])
    let offsets = dict.tensors.compactMap { dict.storages[$0.storageKey]?.fileOffset }
    #expect(offsets == offsets.sorted())
  }

  @Test(arguments: 0..<9) func headerIsPaddedToEight(nameLength: Int) throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let name = String(repeating: "n", count: nameLength + 1)
    let path = try SafetensorsFixture.write(
      [OutputTensor(name: name, dtype: .u8, shape: [1], source: BytesSource([9]))], in: directory)
    let bytes = try SafetensorsFixture.contents(path)
    let headerSize = Int(bytes[0]) | Int(bytes[1]) << 8
    #expect(headerSize % 8 == 0)
    #expect(bytes.count == 8 + headerSize + 1)
    let text = try headerText(path)
    #expect(text.hasSuffix("}") || text.hasSuffix(" "))
    #expect(text.trimmingTrailingSpaces.count > headerSize - 8)
  }

  /// Checked by hand against the real library (safetensors 0.8.0, torch 2.15.0):
  /// `save_file({...the tensors below as torch tensors...}, "py.safetensors", metadata={"format": "pt"})`
  /// produced exactly these bytes (header length 632, the JSON below, the data in hex), and ckptd's writer
  /// must produce the same file from the same tensors. The name `é"q\<LF><U+0001>` covers serde_json's
  /// escaping (raw UTF-8, `\"`, `\\`, `\n`, lowercase `\u0001`).
  /// Also checked by hand (not repeatable here without Python): a `save_file` output holding every dtype
  /// of `DType` (3x4 each, plus a 0-dim, an empty and a non-ASCII name, metadata `format` and `extra`) read
  /// by `SafetensorsReader` and written back by `SafetensorsWriter` was byte-identical to the original,
  /// and `safe_open` loaded ckptd's copy with equal tensors and metadata.
  @Test func matchesReferenceWriterByteForByte() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let data = hexBytes(
      "07000000000000000000803f00000040000000000000803f0000004000004040000080400000a040003c004000420100ffff38403cff0100"
    )
    func slice(_ range: Range<Int>) -> BytesSource { BytesSource(Array(data[range])) }
    let tensors = [
      OutputTensor(name: "b.weight", dtype: .f32, shape: [2, 3], source: slice(16..<40)),
      OutputTensor(name: "a.bias", dtype: .f16, shape: [3], source: slice(40..<46)),
      OutputTensor(name: "Z", dtype: .i64, shape: [], source: slice(0..<8)),
      OutputTensor(name: "é\"q\\\n\u{1}", dtype: .bf16, shape: [0, 4], source: slice(40..<40)),
      OutputTensor(name: "flag", dtype: .bool, shape: [2], source: slice(54..<56)),
      OutputTensor(name: "f8", dtype: .f8e4m3, shape: [2], source: slice(50..<52)),
      OutputTensor(name: "e5", dtype: .f8e5m2, shape: [1], source: slice(52..<53)),
      OutputTensor(name: "u16", dtype: .u16, shape: [2], source: slice(46..<50)),
      OutputTensor(name: "c", dtype: .c64, shape: [1], source: slice(8..<16)),
      OutputTensor(name: "u8", dtype: .u8, shape: [1], source: slice(53..<54)),
    ]
    let json =
      #"{"__metadata__":{"format":"pt"},"Z":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"#
      + #""c":{"dtype":"C64","shape":[1],"data_offsets":[8,16]},"#
      + #""b.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[16,40]},"#
      + #""é\"q\\\n\u0001":{"dtype":"BF16","shape":[0,4],"data_offsets":[40,40]},"#
      + #""a.bias":{"dtype":"F16","shape":[3],"data_offsets":[40,46]},"#
      + #""u16":{"dtype":"U16","shape":[2],"data_offsets":[46,50]},"#
      + #""f8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[50,52]},"#
      + #""e5":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[52,53]},"#
      + #""u8":{"dtype":"U8","shape":[1],"data_offsets":[53,54]},"#
      + #""flag":{"dtype":"BOOL","shape":[2],"data_offsets":[54,56]}}       "#
    let expected = SafetensorsFixture.file(json: json, data: data)
    #expect(expected.count == 8 + 632 + 56)
    let path = try SafetensorsFixture.write(tensors, in: directory)
    #expect(try SafetensorsFixture.contents(path) == expected)
  }

  @Test func writerRefusesDuplicatesAndReservedName() throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    for names in [["a", "a"], ["__metadata__"]] {
      let tensors = names.map { OutputTensor(name: $0, dtype: .u8, shape: [1], source: BytesSource([1])) }
      let error = #expect(throws: CheckpointError.self) { try SafetensorsFixture.write(tensors, in: directory) }
      #expect(error?.code == .invalidFormat)
      #expect(error?.path == directory + "/out.safetensors")
    }
  }

  @Test(arguments: [(4, [1, 2, 3]), (3, [1, 2, 3, 4]), (4, [1, 2, 3, 4, 5])])
  func writerRefusesSourcesOfTheWrongSize(announced: Int, actual: [UInt8]) throws {
    let directory = try SafetensorsFixture.makeDirectory()
    defer { SafetensorsFixture.remove(directory) }
    let source = LyingSource(byteCount: Int64(announced), actual: actual)
    let tensors = [OutputTensor(name: "w", dtype: .u8, shape: [4], source: source)]
    let error = #expect(throws: CheckpointError.self) { try SafetensorsFixture.write(tensors, in: directory) }
    #expect(error?.code == .mismatch)
    #expect(error?.description.contains("out.safetensors") == true)
  }

  @Test func writerRefusesHeaderOverLimit() throws {
    // The real limit is 100,000,000 bytes; a small one exercises the same check quickly.
    let tensors = [OutputTensor(name: "w", dtype: .u8, shape: [0], source: BytesSource([]))]
    let exact = try SafetensorsWriter.makeHeader(tensors, metadata: [:], path: "x.safetensors")
    #expect(exact.0.count == 88)
    #expect(throws: Never.self) {
      try SafetensorsWriter.makeHeader(tensors, metadata: [:], path: "x.safetensors", limit: 88)
    }
    let error = #expect(throws: CheckpointError.self) {
      try SafetensorsWriter.makeHeader(tensors, metadata: [:], path: "x.safetensors", limit: 87)
    }
    #expect(error?.code == .limitExceeded)
    #expect(error?.path == "x.safetensors")
  }

  private func headerText(_ path: String) throws -> String {
    let bytes = try SafetensorsFixture.contents(path)
    var size = 0
    for index in 0..<8 { size |= Int(bytes[index]) << (8 * index) }
    return String(decoding: bytes[8..<(8 + size)], as: UTF8.self)
  }

  private func hexBytes(_ hex: String) -> [UInt8] {
    let digits = Array(hex.utf8)
    return stride(from: 0, to: digits.count, by: 2).compactMap {
      UInt8(String(decoding: digits[$0..<($0 + 2)], as: UTF8.self), radix: 16)
    }
  }
}

extension String {
  fileprivate var trimmingTrailingSpaces: Substring {
    var end = endIndex
    while end > startIndex, self[index(before: end)] == " " { end = index(before: end) }
    return self[..<end]
  }
}
