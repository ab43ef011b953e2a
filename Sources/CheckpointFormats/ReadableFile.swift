import Synchronization
import SystemPackage

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A read-only file descriptor read with `pread` at absolute offsets; never loaded whole.
///
/// Refuses to follow a symlink at the last path component only when asked (`noFollow`).
///
/// Page cache: when it is opened, the file notes which of its pages are already cached (`mincore`: someone
/// else, such as the training job, is reading them). `releaseCache` then drops the pages ckptd brought in and
/// leaves those alone, and `dropBehind` makes every read release its range once it is done with it.
public final class ReadableFile: Sendable {
  /// The path as given, for error messages.
  public let path: String
  /// The descriptor; closed exactly once, when the object goes away.
  package let descriptor: FileDescriptor
  /// The file's size when it was opened.
  public let size: Int64
  /// The pages that were in the page cache when the file was opened; nil if the kernel could not say (nothing
  /// is released then).
  private let cachedBefore: PageSet?
  private let dropping = Atomic<Bool>(false)
  /// With `dropBehind`: everything before this offset has been released.
  private let releasedThrough = Atomic<Int64>(0)
  /// `dropBehind` releases what lies this far behind the reads, in batches of as much again: pages read a
  /// moment ago can still sit in per-CPU LRU batches, where DONTNEED cannot drop them without draining every
  /// CPU's batches (`lru_add_drain_all`, which waits for each core: slow on a busy machine).
  static let releaseLag: Int64 = 32 << 20

  /// The raw descriptor, for the C calls of other modules.
  public var fd: Int32 { descriptor.rawValue }

  /// Opens `path` for reading. The corresponding C function is `open(2)` with `O_RDONLY|O_CLOEXEC`.
  public init(path: String, noFollow: Bool = false) throws {
    let descriptor = try FileDescriptor.open(checkpointPath: path, .readOnly, options: noFollow ? [.noFollow] : [])
    let info: (isRegular: Bool, size: Int64)
    do {
      info = try descriptor.status(path: path)
    } catch {
      try? descriptor.close()
      throw error
    }
    guard info.isRegular else {
      try? descriptor.close()
      throw CheckpointError(.invalidFormat, path: path, "not a regular file")
    }
    // Weights are read front to back: ask for a larger read-ahead.
    descriptor.advise(POSIX_FADV_SEQUENTIAL)
    self.path = path
    self.descriptor = descriptor
    self.size = info.size
    self.cachedBefore = PageSet(residentIn: descriptor, size: info.size)
  }

  deinit { try? descriptor.closeOnce(path: path) }

  /// Reads exactly `buffer.count` bytes at `offset`, or throws `.truncated` if the file ends first.
  /// The corresponding C function is `pread(2)`.
  public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
    let done = try descriptor.readFully(at: offset, into: buffer, path: path)
    if done < buffer.count {
      throw CheckpointError(
        .truncated, path: path, "file ends at byte \(offset + Int64(done)), expected \(buffer.count - done) more")
    }
    didRead(offset: offset, count: Int64(buffer.count))
  }

  /// Reads a small range into a new array (headers, pickles, zip records: never tensor data).
  public func readBytes(at offset: Int64, count: Int) throws -> [UInt8] {
    guard count >= 0, offset >= 0, offset <= size, Int64(count) <= size - offset else {
      throw CheckpointError(
        .truncated, path: path, "needs bytes \(offset)..<\(offset + Int64(count)) but the file has \(size)")
    }
    var bytes = [UInt8](repeating: 0, count: count)
    try bytes.withUnsafeMutableBytes { (raw) in try read(at: offset, into: raw) }
    return bytes
  }

  /// The current size on disk (a growing file), from `fstat(2)`.
  public func currentSize() -> Int64 {
    (try? descriptor.status(path: path).size) ?? size
  }

  /// Whether every read (and every kernel copy out of the file) releases its range from the page cache once
  /// done: on for the last pass over a source.
  public var dropBehind: Bool {
    get { dropping.load(ordering: .relaxed) }
    set { dropping.store(newValue, ordering: .relaxed) }
  }

  /// Called after each read, and after the kernel copied a range out of the file (`copy_file_range`): with
  /// `dropBehind`, releases what lies `releaseLag` behind. (What a non-sequential read skips is released by
  /// `releaseCache()` at the end.)
  public func didRead(offset: Int64, count: Int64) {
    guard dropping.load(ordering: .relaxed) else { return }
    let mark = releasedThrough.load(ordering: .relaxed)
    let through = offset + count - Self.releaseLag
    guard through - mark >= Self.releaseLag else { return }
    if releasedThrough.compareExchange(expected: mark, desired: through, ordering: .relaxed).exchanged {
      releaseCache(offset: mark, count: through - mark)
    }
  }

  /// Pages of the file in the page cache now (`mincore`); nil if the kernel cannot say. For tests and benches.
  package func residentPageCount() -> Int? {
    guard let now = PageSet(residentIn: descriptor, size: size) else { return nil }
    let pages = (size + Int64(PageSet.pageSize) - 1) / Int64(PageSet.pageSize)
    return (0..<pages).reduce(0) { $0 + (now.contains($1) ? 1 : 0) }
  }

  /// Drops the pages of `count` bytes at `offset` (the whole file by default) from the page cache
  /// (`posix_fadvise(POSIX_FADV_DONTNEED)`), except the pages that were cached before this file was opened.
  public func releaseCache(offset: Int64 = 0, count: Int64? = nil) {
    guard let cachedBefore else { return }
    let end = count.map { Swift.min(offset + $0, size) } ?? size
    guard offset < end else { return }
    let page = Int64(PageSet.pageSize)
    var first = offset / page
    let last = (end + page - 1) / page
    // Release each run of pages that were not cached before.
    while first < last {
      while first < last && cachedBefore.contains(first) { first += 1 }
      var stop = first
      while stop < last && !cachedBefore.contains(stop) { stop += 1 }
      if stop > first { descriptor.advise(POSIX_FADV_DONTNEED, offset: first * page, count: (stop - first) * page) }
      first = stop
    }
  }
}

/// A set of page numbers of one file: the pages that were in the page cache at one moment.
struct PageSet: Sendable {
  static let pageSize = Swift.max(Int(sysconf(Int32(_SC_PAGESIZE))), 4096)
  /// Bytes asked of `mincore` at once (one vector byte per page).
  static let sliceSize = 1 << 30

  /// One bit per page; empty when no page was cached.
  private let bits: [UInt64]

  /// The pages of `descriptor` (of `size` bytes) in the page cache now; nil if the kernel cannot say.
  init?(residentIn descriptor: FileDescriptor, size: Int64) {
    let pages = Int((size + Int64(Self.pageSize) - 1) / Int64(Self.pageSize))
    var bits: [UInt64] = []
    var any = false
    let slicePages = Self.sliceSize / Self.pageSize
    let vector = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: Swift.min(pages, slicePages))
    defer { vector.deallocate() }
    var start = 0
    while start < pages {
      let count = Swift.min(pages - start, slicePages)
      let bytes = Swift.min(Int64(count) * Int64(Self.pageSize), size - Int64(start) * Int64(Self.pageSize))
      let slice = UnsafeMutableBufferPointer(rebasing: vector[0..<count])
      guard descriptor.residentPages(offset: Int64(start) * Int64(Self.pageSize), count: Int(bytes), into: slice)
      else { return nil }
      for index in 0..<count where slice[index] & 1 != 0 {
        if !any {
          bits = [UInt64](repeating: 0, count: (pages + 63) / 64)
          any = true
        }
        let page = start + index
        bits[page >> 6] |= 1 << UInt64(page & 63)
      }
      start += count
    }
    self.bits = bits
  }

  /// Whether page `page` was cached.
  func contains(_ page: Int64) -> Bool {
    let word = Int(page >> 6)
    guard word < bits.count else { return false }
    return bits[word] & (1 << UInt64(page & 63)) != 0
  }
}
