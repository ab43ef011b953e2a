import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What a claim (or manifest lock) file says: who holds it, and how alive it is.
///
/// Written as one JSON line. `start` is the holder's wall clock, for people only: no decision ever compares it
/// (or any file time) with another node's clock.
public struct ClaimRecord: Sendable, Equatable, Codable {
  /// The holder's `node_name`.
  public var node: String
  /// The holder's process id.
  public var pid: Int32
  /// The holder's /proc/sys/kernel/random/boot_id: a pid means something only within one boot.
  public var bootID: String
  /// The holder's process start time in clock ticks since boot (/proc/PID/stat field 22), to tell a live
  /// process from a later one that reuses the pid.
  public var pidStart: String
  /// When the claim was taken, ISO 8601 UTC (informational).
  public var start: String
  /// Raised by one with every takeover; the highest generation present is the claim in force.
  public var generation: Int
  /// Raised by one with every refresh, so that observers see the file change while its holder lives.
  public var beat: Int
  /// Random, unique to this acquisition: how a holder recognises its own file.
  public var token: String

  enum CodingKeys: String, CodingKey {
    case node, pid, bootID = "boot_id", pidStart = "pid_start", start, generation, beat, token
  }

  /// "node N pid P", as messages name a holder.
  public var holder: String { "node \(node) pid \(pid)" }

  /// The record as one line of JSON plus a newline.
  func encoded() -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let data = (try? encoder.encode(self)) ?? Data()
    return Array(data) + [0x0A]
  }

  /// The record in `bytes`, or nil for an empty (being written) or damaged file.
  static func decode(_ bytes: [UInt8]) -> ClaimRecord? {
    try? JSONDecoder().decode(ClaimRecord.self, from: Data(bytes))
  }
}

/// Who this process is, as claim files record it.
public struct ClaimIdentity: Sendable, Equatable {
  public var node: String
  public var pid: Int32
  public var bootID: String
  public var pidStart: String

  public init(node: String, pid: Int32, bootID: String, pidStart: String) {
    self.node = node
    self.pid = pid
    self.bootID = bootID
    self.pidStart = pidStart
  }

  /// This process, on this boot, under `node`.
  public static func current(node: String) -> ClaimIdentity {
    let pid = getpid()
    return ClaimIdentity(node: node, pid: pid, bootID: bootID(), pidStart: processStart(pid) ?? "")
  }

  /// /proc/sys/kernel/random/boot_id, trimmed; "" when unreadable.
  public static func bootID() -> String {
    let text = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? ""
    return text.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// Field 22 (starttime) of /proc/PID/stat, or nil when the process does not exist.
  public static func processStart(_ pid: Int32) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = text.lastIndex(of: ")")
    else { return nil }
    // After "pid (comm)" come the fields from 3 (state) on; starttime is field 22.
    let fields = text[text.index(after: close)...].split(separator: " ")
    return fields.count > 19 ? String(fields[19]) : nil
  }

  /// Whether the process a record names is certainly gone: same boot, and the pid is free or now belongs to a
  /// process that started later. Another boot's or node's process can only be judged by observation.
  public func holderIsDead(_ record: ClaimRecord) -> Bool {
    guard !bootID.isEmpty, record.bootID == bootID, record.pid > 0 else { return false }
    if record.pid == pid && record.pidStart == pidStart { return false }
    guard let start = ClaimIdentity.processStart(record.pid) else {
      return kill(record.pid, 0) != 0 && errno == ESRCH
    }
    return !record.pidStart.isEmpty && start != record.pidStart
  }
}

/// The monotonic time since a starting point, read from an injected clock (`ContinuousClock` in production,
/// `TestClock` in tests). Only durations measured this way decide staleness.
public struct Stopwatch: Sendable {
  private let read: @Sendable () -> Duration

  public init(clock: any Clock<Duration>) {
    read = Stopwatch.reader(clock)
  }

  private static func reader<C: Clock<Duration>>(_ clock: C) -> @Sendable () -> Duration {
    let start = clock.now
    return { start.duration(to: clock.now) }
  }

  /// Time elapsed on the clock since this stopwatch was made.
  public var elapsed: Duration { read() }
}
