import Foundation

/// The daemon as a whole: what `state` in the status document says.
public enum DaemonRunState: String, Codable, Sendable, CaseIterable {
  case starting, running, reloading, stopping
}

/// One watched directory: what its `state` says.
public enum DirectoryWatchState: String, Codable, Sendable, CaseIterable {
  /// Watched with inotify.
  case watching
  /// Does not exist (yet); picked up when it appears.
  case missing
  /// Cannot be watched (permissions, watch limit); `last_error` says why.
  case error
}

/// A checkpoint that is seen but not converted yet, and why it waits.
public struct PendingCheckpoint: Codable, Sendable, Equatable {
  public var name: String
  /// e.g. "waiting for trainer_state.json", "settling (4 s left)", "queued", "retry in 30 s".
  public var reason: String

  public init(name: String, reason: String) {
    self.name = name
    self.reason = reason
  }
}

/// One watched directory in the status document.
public struct DirectoryStatus: Codable, Sendable, Equatable {
  public var path: String
  /// Target format (`bin` or `safetensors`).
  public var format: String
  /// Target dtype (`keep`, `f32`, `f16`, `bf16`).
  public var dtype: String
  public var state: DirectoryWatchState
  /// Outcomes since start by manifest event name: converted, failed, skipped, vanished.
  public var counts: [String: Int]
  public var pending: [PendingCheckpoint]
  public var lastError: String?
  /// The directory's file system and how it is watched (absent in documents of older versions).
  public var fileSystem: WatchedFileSystem?
  /// The last poll of the directory, where it is polled.
  public var lastPoll: PollFigures?

  public init(
    path: String, format: String, dtype: String, state: DirectoryWatchState = .watching, counts: [String: Int] = [:],
    pending: [PendingCheckpoint] = [], lastError: String? = nil, fileSystem: WatchedFileSystem? = nil,
    lastPoll: PollFigures? = nil
  ) {
    self.path = path
    self.format = format
    self.dtype = dtype
    self.state = state
    self.counts = counts
    self.pending = pending
    self.lastError = lastError
    self.fileSystem = fileSystem
    self.lastPoll = lastPoll
  }

  enum CodingKeys: String, CodingKey {
    case path, format, dtype, state, counts, pending
    case lastError = "last_error"
    case fileSystem = "file_system"
    case lastPoll = "last_poll"
  }
}

/// A watched directory's file system as the status file shows it.
public struct WatchedFileSystem: Codable, Sendable, Equatable {
  /// `ext4`, `nfs4`, `fuse.sshfs`...
  public var type: String
  /// statfs `f_type` in hex (`0x65735546`), or `?`.
  public var magic: String
  /// `inotify` or `poll`.
  public var mode: String
  /// Every `poll_seconds` when polled.
  public var pollSeconds: Double?
  /// Why this mode.
  public var reason: String

  public init(type: String, magic: String, mode: String, pollSeconds: Double?, reason: String) {
    self.type = type
    self.magic = magic
    self.mode = mode
    self.pollSeconds = pollSeconds
    self.reason = reason
  }

  enum CodingKeys: String, CodingKey {
    case type, magic, mode, reason
    case pollSeconds = "poll_seconds"
  }
}

/// When a directory was last polled and how long the poll took.
public struct PollFigures: Codable, Sendable, Equatable {
  /// Wall time the poll started.
  public var at: Date
  /// How long it took.
  public var seconds: Double

  public init(at: Date, seconds: Double) {
    self.at = at
    self.seconds = seconds
  }

  enum CodingKeys: String, CodingKey { case at, seconds }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    at = try ISOTime.decode(c, .at)
    seconds = try c.decode(Double.self, forKey: .seconds)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(ISOTime.string(at), forKey: .at)
    try c.encode(seconds, forKey: .seconds)
  }
}

/// A conversion under way.
public struct ActiveConversion: Codable, Sendable, Equatable {
  /// The watched directory.
  public var directory: String
  /// The checkpoint folder's name.
  public var checkpoint: String
  public var bytesDone: Int64
  public var bytesTotal: Int64
  public var startedAt: Date

  public init(directory: String, checkpoint: String, bytesDone: Int64 = 0, bytesTotal: Int64 = 0, startedAt: Date) {
    self.directory = directory
    self.checkpoint = checkpoint
    self.bytesDone = bytesDone
    self.bytesTotal = bytesTotal
    self.startedAt = startedAt
  }

  enum CodingKeys: String, CodingKey {
    case directory, checkpoint
    case bytesDone = "bytes_done"
    case bytesTotal = "bytes_total"
    case startedAt = "started_at"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    directory = try c.decode(String.self, forKey: .directory)
    checkpoint = try c.decode(String.self, forKey: .checkpoint)
    bytesDone = try c.decode(Int64.self, forKey: .bytesDone)
    bytesTotal = try c.decode(Int64.self, forKey: .bytesTotal)
    startedAt = try ISOTime.decode(c, .startedAt)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(directory, forKey: .directory)
    try c.encode(checkpoint, forKey: .checkpoint)
    try c.encode(bytesDone, forKey: .bytesDone)
    try c.encode(bytesTotal, forKey: .bytesTotal)
    try c.encode(ISOTime.string(startedAt), forKey: .startedAt)
  }
}

/// inotify figures.
public struct InotifyStatus: Codable, Sendable, Equatable {
  /// Watches held now.
  public var watches: Int
  /// IN_Q_OVERFLOW events seen.
  public var overflows: Int
  /// Full rescans done (start-up, reload, overflow, unknown watch).
  public var rescans: Int

  public init(watches: Int = 0, overflows: Int = 0, rescans: Int = 0) {
    self.watches = watches
    self.overflows = overflows
    self.rescans = rescans
  }
}

/// The status document (`status.json`), replaced atomically by `StatusPublisher`, read by `ckptd status`.
public struct StatusSnapshot: Codable, Sendable, Equatable {
  public static let currentSchemaVersion = 1

  public var schemaVersion: Int
  public var pid: Int32
  /// The instance's `node_name` (the host name unless configured).
  public var node: String?
  /// ckptd's version.
  public var version: String
  public var startedAt: Date
  /// Set by the publisher on every write.
  public var updatedAt: Date
  public var state: DaemonRunState
  public var directories: [DirectoryStatus]
  public var active: [ActiveConversion]
  public var inotify: InotifyStatus
  /// Drop-ins that were skipped.
  public var problems: [DropinProblem]
  /// Seconds between rewrites of an unchanged document (the watchdog's pace); nil when an idle daemon does not
  /// rewrite it (no `WatchdogSec`): then only the pid says whether it is alive, not the document's age.
  public var heartbeatSeconds: Double?
  /// Why the last status write failed (shown once a write works again; also logged).
  public var statusWriteError: String?

  public init(
    pid: Int32, version: String, startedAt: Date = Date(), updatedAt: Date? = nil, state: DaemonRunState = .starting,
    directories: [DirectoryStatus] = [], active: [ActiveConversion] = [], inotify: InotifyStatus = InotifyStatus(),
    problems: [DropinProblem] = [], schemaVersion: Int = StatusSnapshot.currentSchemaVersion,
    heartbeatSeconds: Double? = nil, statusWriteError: String? = nil
  ) {
    self.schemaVersion = schemaVersion
    self.pid = pid
    self.version = version
    self.startedAt = startedAt
    self.updatedAt = updatedAt ?? startedAt
    self.state = state
    self.directories = directories
    self.active = active
    self.inotify = inotify
    self.problems = problems
    self.heartbeatSeconds = heartbeatSeconds
    self.statusWriteError = statusWriteError
  }

  enum CodingKeys: String, CodingKey {
    case schemaVersion = "schema_version"
    case pid, version, node
    case startedAt = "started_at"
    case updatedAt = "updated_at"
    case state, directories, active, inotify, problems
    case heartbeatSeconds = "heartbeat_seconds"
    case statusWriteError = "status_write_error"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    schemaVersion = try c.decode(Int.self, forKey: .schemaVersion)
    pid = try c.decode(Int32.self, forKey: .pid)
    node = try c.decodeIfPresent(String.self, forKey: .node)
    version = try c.decodeIfPresent(String.self, forKey: .version) ?? ""
    startedAt = try ISOTime.decode(c, .startedAt)
    updatedAt = try ISOTime.decode(c, .updatedAt)
    state = try c.decode(DaemonRunState.self, forKey: .state)
    directories = try c.decodeIfPresent([DirectoryStatus].self, forKey: .directories) ?? []
    active = try c.decodeIfPresent([ActiveConversion].self, forKey: .active) ?? []
    inotify = try c.decodeIfPresent(InotifyStatus.self, forKey: .inotify) ?? InotifyStatus()
    problems = try c.decodeIfPresent([DropinProblem].self, forKey: .problems) ?? []
    heartbeatSeconds = try c.decodeIfPresent(Double.self, forKey: .heartbeatSeconds)
    statusWriteError = try c.decodeIfPresent(String.self, forKey: .statusWriteError)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(schemaVersion, forKey: .schemaVersion)
    try c.encode(pid, forKey: .pid)
    try c.encodeIfPresent(node, forKey: .node)
    try c.encode(version, forKey: .version)
    try c.encode(ISOTime.string(startedAt), forKey: .startedAt)
    try c.encode(ISOTime.string(updatedAt), forKey: .updatedAt)
    try c.encode(state, forKey: .state)
    try c.encode(directories, forKey: .directories)
    try c.encode(active, forKey: .active)
    try c.encode(inotify, forKey: .inotify)
    try c.encode(problems, forKey: .problems)
    try c.encodeIfPresent(heartbeatSeconds, forKey: .heartbeatSeconds)
    try c.encodeIfPresent(statusWriteError, forKey: .statusWriteError)
  }

  /// Index of the directory entry for `path`, if any.
  public func directoryIndex(path: String) -> Int? {
    directories.firstIndex { $0.path == path }
  }
}
