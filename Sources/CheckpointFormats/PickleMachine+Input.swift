/// The bytes of one pickle, read from a file through a small window with `pread`.
///
/// Reading stops at `end` (the record or file end) and at `start + cap`: a pickle that runs past the cap
/// is refused as too large, one that runs past the end as cut short.
struct PickleInput {
  let file: ReadableFile
  /// Absolute offset of the pickle's first byte.
  let start: Int64
  /// Where the bytes available to this pickle end (record end or file end).
  let end: Int64
  /// The largest pickle accepted.
  let cap: Int64
  /// Absolute offset of the next byte to read.
  private(set) var position: Int64
  private var window: [UInt8] = []
  private var windowStart: Int64 = 0
  private static let windowSize = 1 << 20

  init(file: ReadableFile, start: Int64, end: Int64, cap: Int64) {
    self.file = file
    self.start = start
    self.end = end
    self.cap = cap
    self.position = start
  }

  /// Offset of the next byte relative to the pickle's start (for error messages).
  var relativePosition: Int64 { position - start }

  private var limit: Int64 {
    let (capped, overflow) = start.addingReportingOverflow(cap)
    return overflow ? end : Swift.min(end, capped)
  }

  /// Makes sure `count` bytes from `position` are in the window.
  private mutating func ensure(_ count: Int) throws -> Int {
    let (stop, overflow) = position.addingReportingOverflow(Int64(count))
    guard count >= 0, !overflow, stop <= limit else {
      if limit < end {
        throw CheckpointError(.limitExceeded, path: file.path, "pickle is larger than the \(cap)-byte limit")
      }
      throw CheckpointError(
        .truncated, path: file.path, "pickle ends at byte \(end - start) in the middle of an opcode, without STOP")
    }
    let offsetInWindow = position - windowStart
    if offsetInWindow >= 0, offsetInWindow + Int64(count) <= Int64(window.count) {
      return Int(offsetInWindow)
    }
    let length = Swift.min(Swift.max(Int64(count), Int64(PickleInput.windowSize)), limit - position)
    window = try file.readBytes(at: position, count: Int(length))
    windowStart = position
    return 0
  }

  mutating func byte() throws -> UInt8 {
    let at = try ensure(1)
    position += 1
    return window[at]
  }

  mutating func bytes(_ count: Int) throws -> ArraySlice<UInt8> {
    let at = try ensure(count)
    position += Int64(count)
    return window[at..<(at + count)]
  }

  mutating func uint(_ count: Int) throws -> UInt64 {
    let raw = try bytes(count)
    var value: UInt64 = 0
    for (shift, byte) in raw.enumerated() { value |= UInt64(byte) << (8 * UInt64(shift)) }
    return value
  }

  /// A newline-terminated line (for `GLOBAL`), at most `maxLength` bytes, as UTF-8.
  mutating func line(maxLength: Int = 1024) throws -> String? {
    var collected: [UInt8] = []
    while true {
      let next = try byte()
      if next == 0x0A { break }
      collected.append(next)
      if collected.count > maxLength { return nil }
    }
    return String(validating: collected, as: UTF8.self)
  }
}
