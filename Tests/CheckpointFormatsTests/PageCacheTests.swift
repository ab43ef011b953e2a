import CheckpointFormats
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `ReadableFile` releases the pages it brought into the page cache and keeps those that were cached before it
/// opened the file (a training job may still be reading them). Runs on the repository's disk: tmpfs pages
/// cannot be dropped, so /tmp could not tell.
@Suite struct PageCacheTests {
  static let pages = 2048  // 8 MiB of 4 KiB pages
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent(".build").path

  /// A file of `pages` pages written to disk and dropped from the page cache.
  static func coldFile(pages: Int = pages) throws -> String {
    let path = root + "/page-cache-test-\(UInt64.random(in: 0...UInt64.max))"
    let bytes = [UInt8](repeating: 0x5A, count: pages * PageSetSize.page)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let fd = open(path, O_RDONLY)
    try #require(fd >= 0)
    fsync(fd)
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    close(fd)
    return path
  }

  /// Reads `count` bytes at `offset` the way another process would (a plain open and read).
  static func readElsewhere(_ path: String, offset: Int, count: Int) throws {
    let handle = try #require(FileHandle(forReadingAtPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    #expect(try handle.read(upToCount: count)?.count == count)
  }

  static func readAll(_ file: ReadableFile) throws {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
    defer { buffer.deallocate() }
    var offset: Int64 = 0
    while offset < file.size {
      let n = Int(min(Int64(buffer.count), file.size - offset))
      try file.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]))
      offset += Int64(n)
    }
  }

  @Test(arguments: [false, true]) func releasesWhatItReadAndKeepsWhatWasCached(dropBehind: Bool) throws {
    let path = try Self.coldFile()
    defer { unlink(path) }
    // The "trainer" has the second MiB cached.
    try Self.readElsewhere(path, offset: 1 << 20, count: 1 << 20)
    let file = try ReadableFile(path: path)
    let trainer = try #require(file.residentPageCount())
    #expect(trainer >= 256)
    file.dropBehind = dropBehind
    try Self.readAll(file)
    let afterRead = try #require(file.residentPageCount())
    file.releaseCache()
    let afterRelease = try #require(file.residentPageCount())
    // Everything was read in, then all but the trainer's pages went out again.
    #expect(afterRelease == trainer)
    if !dropBehind { #expect(afterRead == Self.pages) }
    // The trainer's range is still cached: reading it now finds every page resident.
    let check = try ReadableFile(path: path)
    #expect(check.residentPageCount() == trainer)
  }

  @Test func dropBehindReleasesWhileReading() throws {
    // 96 MiB: well past the release lag (32 MiB), so pages go out before the end of the file.
    let pages = 96 << 8
    let path = try Self.coldFile(pages: pages)
    defer { unlink(path) }
    let file = try ReadableFile(path: path)
    #expect(file.residentPageCount() == 0)
    file.dropBehind = true
    try Self.readAll(file)
    let left = try #require(file.residentPageCount())
    #expect(left > 0 && left <= pages - (32 << 8), "\(left) of \(pages) pages still cached")
    file.releaseCache()
    #expect(file.residentPageCount() == 0)
  }
}

/// The page size the tests assume for their arithmetic.
enum PageSetSize {
  static let page = Int(sysconf(Int32(_SC_PAGESIZE)))
}
