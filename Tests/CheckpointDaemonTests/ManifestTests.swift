import Foundation
import Testing

@testable import CheckpointDaemon

@Suite struct ManifestTests {
  static func record(_ name: String, _ event: ManifestEvent = .converted, offset: Double = 0) -> ManifestRecord {
    let start = Date(timeIntervalSince1970: 1_800_000_000.125 + offset)
    return ManifestRecord(
      checkpoint: name, event: event, format: "safetensors", dtype: "keep",
      sources: [ManifestFile(name: "pytorch_model.bin", bytes: 1234, sha256: String(repeating: "a", count: 64))],
      outputs: [ManifestFile(name: "model.safetensors", bytes: 1200, sha256: String(repeating: "b", count: 64))],
      tensors: 7, start: start, end: start.addingTimeInterval(1.5), verified: true,
      error: event == .failed ? "disk full" : nil, retryable: event == .failed ? true : nil)
  }

  @Test func appendThenReadRoundTrips() throws {
    let dir = CoreTempDir()
    let manifest = Manifest(path: dir.sub(".ckptd-manifest.jsonl"))
    #expect(try manifest.read() == [])
    let records = [
      Self.record("checkpoint-1"), Self.record("checkpoint-2", .failed), Self.record("checkpoint-1", .removedSource),
    ]
    for record in records { try manifest.append(record) }
    #expect(try manifest.read() == records)
    let latest = manifest.latest()
    #expect(latest.count == 2)
    #expect(latest["checkpoint-1"]?.event == .removedSource)
    #expect(latest["checkpoint-2"]?.error == "disk full")
    // One line per record, each ending in a newline.
    let text = try String(contentsOfFile: manifest.path, encoding: .utf8)
    #expect(text.split(separator: "\n").count == 3)
    #expect(text.hasSuffix("\n"))
  }

  @Test func lineUsesSnakeCaseAndISODatesWithFractions() throws {
    let dir = CoreTempDir()
    let manifest = Manifest(path: dir.sub("m.jsonl"))
    try manifest.append(Self.record("checkpoint-9", .removedSource))
    let line = try String(contentsOfFile: manifest.path, encoding: .utf8)
    #expect(line.contains("\"event\":\"removed_source\""))
    #expect(line.contains("\"start\":\"2027-01-15T08:00:00.125Z\""))
    #expect(line.contains("\"end\":\"2027-01-15T08:00:01.625Z\""))
    #expect(line.contains("\"seconds\":1.5"))
    #expect(!line.contains("\"error\""))
    let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    #expect(object?["tensors"] as? Int == 7)
  }

  @Test func tornLastLineIsToleratedAndTheNextAppendStaysWhole() throws {
    let dir = CoreTempDir()
    let manifest = Manifest(path: dir.sub("m.jsonl"))
    try manifest.append(Self.record("checkpoint-1"))
    try manifest.append(Self.record("checkpoint-2"))
    // A crash mid-append: part of a line, no newline.
    let handle = try #require(FileHandle(forWritingAtPath: manifest.path))
    handle.seekToEndOfFile()
    handle.write(Data("{\"checkpoint\":\"checkpoint-3\",\"ev".utf8))
    handle.closeFile()
    let torn = try manifest.readAll()
    #expect(torn.records.map(\.checkpoint) == ["checkpoint-1", "checkpoint-2"])
    #expect(torn.tornTail)
    #expect(torn.damagedLines == [])

    try manifest.append(Self.record("checkpoint-3"))
    let after = try manifest.readAll()
    #expect(after.records.map(\.checkpoint) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"])
    #expect(!after.tornTail)
    #expect(after.damagedLines == [3])
  }

  @Test func damagedMiddleLineIsSkippedAndReported() throws {
    let dir = CoreTempDir()
    let good = try String(data: JSONEncoder().encode(Self.record("checkpoint-1")), encoding: .utf8) ?? ""
    let file = try dir.write("m.jsonl", good + "\nnot json\n\n" + good + "\n")
    let contents = try Manifest(path: file).readAll()
    #expect(contents.records.count == 2)
    #expect(contents.damagedLines == [2])
    #expect(!contents.tornTail)
  }

  @Test func concurrentAppendsKeepEveryLineWhole() async throws {
    let dir = CoreTempDir()
    let path = dir.sub("m.jsonl")
    await withTaskGroup(of: Void.self) { group in
      for writer in 0..<4 {
        group.addTask {
          let manifest = Manifest(path: path)
          for index in 0..<25 { try? manifest.append(Self.record("checkpoint-\(writer)-\(index)")) }
        }
      }
    }
    let contents = try Manifest(path: path).readAll()
    #expect(contents.records.count == 100)
    #expect(contents.damagedLines == [])
    #expect(Set(contents.records.map(\.checkpoint)).count == 100)
  }

  @Test func appendToUnwritableFolderThrowsWithPath() {
    let manifest = Manifest(path: "/nonexistent-ckptd-dir/m.jsonl")
    let error = #expect(throws: (any Error).self) { try manifest.append(Self.record("checkpoint-1")) }
    #expect("\(error.map { "\($0)" } ?? "")".contains("/nonexistent-ckptd-dir/m.jsonl"))
  }
}

@Suite struct ManifestTimeTests {
  /// The hand-written fast path agrees with Foundation's parser on what ckptd writes, leap days and
  /// century years included, and refuses what is not that exact form.
  @Test func fastPathAgreesWithFoundation() throws {
    var generator = SystemRandomNumberGenerator()
    let foundation = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    var samples = ["2000-02-29T23:59:59.999Z", "1970-01-01T00:00:00.000Z", "2100-12-31T12:00:00.5Z"]
    for _ in 0..<500 {
      let seconds = Double(UInt64.random(in: 0...4_102_444_800, using: &generator))
      let millis = Double(UInt64.random(in: 0..<1000, using: &generator)) / 1000
      samples.append(ISOTime.string(Date(timeIntervalSince1970: seconds + millis)))
    }
    for text in samples {
      let fast = try #require(ISOTime.fastUTC(text), "\(text)")
      let slow = try foundation.parse(text)
      #expect(abs(fast.timeIntervalSince1970 - slow.timeIntervalSince1970) < 0.000_01, "\(text)")
    }
    #expect(ISOTime.fastUTC("2026-11-29T04:10:51Z") == Date(timeIntervalSince1970: 1_795_925_451))
    for bad in [
      "2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-29T24:00:00Z", "2026-11-29T04:10:51+01:00",
      "2026-11-29 04:10:51Z", "2026-11-29T04:10:51.Z", "x026-11-29T04:10:51Z", "",
    ] {
      #expect(ISOTime.fastUTC(bad) == nil, "\(bad)")
    }
  }

  @Test(arguments: [
    ("2027-01-15T08:00:00.125Z", 1_800_000_000.125), ("2027-01-15T08:00:00Z", 1_800_000_000),
    ("2027-01-15T09:00:00.5+01:00", 1_800_000_000.5), ("2027-01-15T08:00:00.125456+00:00", 1_800_000_000.125),
  ])
  func parsesWithAndWithoutFractions(text: String, seconds: Double) throws {
    let date = try #require(ISOTime.date(text))
    #expect(abs(date.timeIntervalSince1970 - seconds) < 0.001)
  }

  @Test func rejectsNonTimestamps() {
    #expect(ISOTime.date("yesterday") == nil)
    let line = #"{"checkpoint":"c","event":"converted","format":"bin","dtype":"keep","start":"x","end":"y"}"#
    #expect(throws: DecodingError.self) { try JSONDecoder().decode(ManifestRecord.self, from: Data(line.utf8)) }
  }
}
