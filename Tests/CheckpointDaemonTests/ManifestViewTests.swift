import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// The daemon's incremental manifest reader: only what was appended since the last look is read.
@Suite struct ManifestViewTests {
  static func record(_ name: String, _ event: ManifestEvent = .converted) -> ManifestRecord {
    // One fixed time: records of one run differ only in their names, as near as they can.
    ManifestRecord(
      checkpoint: name, event: event, format: "bin", dtype: "keep", start: Date(timeIntervalSince1970: 1_800_000_000),
      end: Date(timeIntervalSince1970: 1_800_000_000))
  }

  static func append(_ path: String, _ text: String) throws {
    let handle = try #require(FileHandle(forWritingAtPath: path))
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: Data(text.utf8))
  }

  @Test func readsOnlyWhatWasAppendedAndOnlyWholeLines() throws {
    let dir = CoreTempDir()
    let path = dir.path + "/m.jsonl"
    var view = ManifestView(path: path)
    #expect(view.refreshed().isEmpty)
    let manifest = Manifest(path: path)
    try manifest.append(Self.record("checkpoint-1"))
    try manifest.append(Self.record("checkpoint-2", .failed))
    #expect(view.refreshed().keys.sorted() == ["checkpoint-1", "checkpoint-2"])
    let size = view.offset
    #expect(size == Int64((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1))
    // A record being written (no newline yet) is not read, and the bytes before it are not read again.
    let line = String(decoding: try Manifest.encodeLine(Self.record("checkpoint-2"), path: path), as: UTF8.self)
    try Self.append(path, String(line.dropLast(10)))
    #expect(view.fresh()["checkpoint-2"]?.event == .failed)
    #expect(view.offset == size)
    try Self.append(path, String(line.suffix(10)))
    #expect(view.fresh()["checkpoint-2"]?.event == .converted)
    #expect(view.offset > size)
    // exec records say nothing about the conversion.
    try manifest.append(Self.record("checkpoint-2", .exec))
    #expect(view.refreshed()["checkpoint-2"]?.event == .converted)
    #expect(view.counts == ["converted": 2, "failed": 1, "exec": 1])
  }

  @Test func aManifestThatCannotBeReadKeepsWhatWasRead() throws {
    let dir = CoreTempDir()
    let path = dir.path + "/m.jsonl"
    var view = ManifestView(path: path)
    try Manifest(path: path).append(Self.record("checkpoint-1"))
    #expect(view.refreshed().keys.sorted() == ["checkpoint-1"])
    // A directory in its place opens but cannot be read (EISDIR), as an NFS read can fail with EIO or ESTALE: the
    // records read stand (forgetting them would make every converted checkpoint look new).
    try FileManager.default.moveItem(atPath: path, toPath: path + ".away")
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    #expect(view.refreshed().keys.sorted() == ["checkpoint-1"])
    #expect(view.fresh().keys.sorted() == ["checkpoint-1"])
    // Readable again: read from the start, with what was appended meanwhile.
    try FileManager.default.removeItem(atPath: path)
    try FileManager.default.moveItem(atPath: path + ".away", toPath: path)
    try Manifest(path: path).append(Self.record("checkpoint-2"))
    #expect(view.refreshed().keys.sorted() == ["checkpoint-1", "checkpoint-2"])
    #expect(view.counts["converted"] == 2)
    // Removed: nothing is known.
    try FileManager.default.removeItem(atPath: path)
    #expect(view.refreshed().isEmpty)
  }

  @Test func aReplacedOrTruncatedManifestIsReadAgainFromTheStart() throws {
    let dir = CoreTempDir()
    let path = dir.path + "/m.jsonl"
    var view = ManifestView(path: path)
    let manifest = Manifest(path: path)
    for index in 1...3 { try manifest.append(Self.record("checkpoint-\(index)")) }
    #expect(view.refreshed().count == 3)
    // Replaced by another file holding one record.
    let other = Manifest(path: dir.path + "/other.jsonl")
    try other.append(Self.record("checkpoint-9"))
    #expect(rename(dir.path + "/other.jsonl", path) == 0)
    #expect(view.refreshed().keys.sorted() == ["checkpoint-9"])
    // Truncated in place, and grown again to the same length and longer.
    #expect(truncate(path, 0) == 0)
    try manifest.append(Self.record("checkpoint-5"))
    #expect(view.fresh().keys.sorted() == ["checkpoint-5"])
    #expect(truncate(path, 0) == 0)
    try manifest.append(Self.record("checkpoint-6"))
    try manifest.append(Self.record("checkpoint-7"))
    #expect(view.fresh().keys.sorted() == ["checkpoint-6", "checkpoint-7"])
    // Gone.
    unlink(path)
    #expect(view.refreshed().isEmpty)
  }
}
