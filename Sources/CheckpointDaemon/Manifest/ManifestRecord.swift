import Foundation

/// What happened to a checkpoint; one manifest line per event.
public enum ManifestEvent: String, Codable, Sendable, CaseIterable {
  case converted
  case skipped
  case failed
  case vanished
  case removedSource = "removed_source"
  /// An `exec_after` command ran after a conversion.
  case exec
}

/// A file a conversion read or wrote: name relative to the checkpoint folder, size, optional SHA-256 (hex).
public struct ManifestFile: Codable, Sendable, Equatable {
  public var name: String
  public var bytes: Int64
  public var sha256: String?

  public init(name: String, bytes: Int64, sha256: String? = nil) {
    self.name = name
    self.bytes = bytes
    self.sha256 = sha256
  }
}

/// One line of the manifest (JSON Lines, snake_case keys, ISO 8601 dates with fractional seconds).
public struct ManifestRecord: Codable, Sendable, Equatable {
  /// The checkpoint folder's name (e.g. `checkpoint-500`).
  public var checkpoint: String
  public var event: ManifestEvent
  /// Target format (`bin` or `safetensors`).
  public var format: String
  /// Target dtype (`keep`, `f32`, `f16`, `bf16`).
  public var dtype: String
  public var sources: [ManifestFile]
  public var outputs: [ManifestFile]
  /// Tensors converted.
  public var tensors: Int
  public var start: Date
  public var end: Date
  public var seconds: Double
  /// The outputs were re-read and compared with the source.
  public var verified: Bool
  /// The reason for `failed` (and `vanished`) events.
  public var error: String?
  /// Whether a failure may pass (disk full) and is retried.
  public var retryable: Bool?
  /// Free text (e.g. why a checkpoint was skipped).
  public var note: String?
  /// What was converted: `weights` (ordinary weight files), `deepspeed` (ZeRO partitions consolidated) or
  /// `dcp` (a Distributed Checkpoint consolidated); nil where nothing was read (failures, exec records).
  public var sourceKind: String?
  /// The instance (`node_name`) that wrote the record; nil in records from before it was kept.
  public var node: String?
  /// `exec` records: the command's exit status, or the signal that ended it.
  public var exitStatus: Int32?
  public var signal: Int32?
  /// `exec` records: the last lines the command wrote to standard error.
  public var stderrTail: [String]?

  public init(
    checkpoint: String, event: ManifestEvent, format: String, dtype: String, sources: [ManifestFile] = [],
    outputs: [ManifestFile] = [], tensors: Int = 0, start: Date, end: Date, seconds: Double? = nil,
    verified: Bool = false, error: String? = nil, retryable: Bool? = nil, note: String? = nil
  ) {
    self.checkpoint = checkpoint
    self.event = event
    self.format = format
    self.dtype = dtype
    self.sources = sources
    self.outputs = outputs
    self.tensors = tensors
    self.start = start
    self.end = end
    self.seconds = seconds ?? end.timeIntervalSince(start)
    self.verified = verified
    self.error = error
    self.retryable = retryable
    self.note = note
  }

  enum CodingKeys: String, CodingKey {
    case checkpoint, event, format, dtype, sources, outputs, tensors, start, end, seconds, verified, error
    case retryable, note
    case sourceKind = "source_kind"
    case node
    case exitStatus = "exit_status"
    case signal
    case stderrTail = "stderr_tail"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    checkpoint = try c.decode(String.self, forKey: .checkpoint)
    event = try c.decode(ManifestEvent.self, forKey: .event)
    format = try c.decode(String.self, forKey: .format)
    dtype = try c.decode(String.self, forKey: .dtype)
    sources = try c.decodeIfPresent([ManifestFile].self, forKey: .sources) ?? []
    outputs = try c.decodeIfPresent([ManifestFile].self, forKey: .outputs) ?? []
    tensors = try c.decodeIfPresent(Int.self, forKey: .tensors) ?? 0
    start = try ISOTime.decode(c, .start)
    end = try ISOTime.decode(c, .end)
    seconds = try c.decodeIfPresent(Double.self, forKey: .seconds) ?? end.timeIntervalSince(start)
    verified = try c.decodeIfPresent(Bool.self, forKey: .verified) ?? false
    error = try c.decodeIfPresent(String.self, forKey: .error)
    retryable = try c.decodeIfPresent(Bool.self, forKey: .retryable)
    note = try c.decodeIfPresent(String.self, forKey: .note)
    sourceKind = try c.decodeIfPresent(String.self, forKey: .sourceKind)
    node = try c.decodeIfPresent(String.self, forKey: .node)
    exitStatus = try c.decodeIfPresent(Int32.self, forKey: .exitStatus)
    signal = try c.decodeIfPresent(Int32.self, forKey: .signal)
    stderrTail = try c.decodeIfPresent([String].self, forKey: .stderrTail)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(checkpoint, forKey: .checkpoint)
    try c.encode(event, forKey: .event)
    try c.encode(format, forKey: .format)
    try c.encode(dtype, forKey: .dtype)
    try c.encode(sources, forKey: .sources)
    try c.encode(outputs, forKey: .outputs)
    try c.encode(tensors, forKey: .tensors)
    try c.encode(ISOTime.string(start), forKey: .start)
    try c.encode(ISOTime.string(end), forKey: .end)
    try c.encode(seconds, forKey: .seconds)
    try c.encode(verified, forKey: .verified)
    try c.encodeIfPresent(error, forKey: .error)
    try c.encodeIfPresent(retryable, forKey: .retryable)
    try c.encodeIfPresent(note, forKey: .note)
    try c.encodeIfPresent(sourceKind, forKey: .sourceKind)
    try c.encodeIfPresent(node, forKey: .node)
    try c.encodeIfPresent(exitStatus, forKey: .exitStatus)
    try c.encodeIfPresent(signal, forKey: .signal)
    try c.encodeIfPresent(stderrTail, forKey: .stderrTail)
  }
}
