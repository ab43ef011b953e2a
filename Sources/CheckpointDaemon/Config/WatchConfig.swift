import CheckpointConversion
import CheckpointFormats

/// One watched output directory, as one drop-in file (`watch.d/NN-name.toml`) describes it.
public struct WatchConfig: Sendable, Equatable {
  /// The output directory whose `checkpoint-*` folders are converted (absolute, no trailing slash).
  public var path: String
  /// The format the weights are converted to.
  public var format: WeightFormat
  /// Keep every dtype, or cast floating tensors.
  public var dtype: CastTarget
  /// Shell glob (fnmatch) the checkpoint folder names must match.
  public var pattern: String
  /// The file whose close-after-write marks a checkpoint as written; "" = quiet period and structure only.
  public var readyMarker: String
  /// Seconds without any change in a checkpoint folder before it is converted.
  public var settleSeconds: Double
  /// false: remove the source weights after a verified conversion.
  public var keepSource: Bool
  /// Re-read the outputs and compare every tensor with the source.
  public var verify: Bool
  /// The manifest file name, relative to `path` (an absolute path is taken as is).
  public var manifest: String
  /// Run after each successful conversion (`exec_after`): an argv, never a shell; empty = nothing.
  public var execAfter: [String] = []
  /// Seconds before a running `exec_after` command's process group gets SIGTERM (`exec_timeout_seconds`).
  public var execTimeoutSeconds: Double = WatchConfig.defaultExecTimeoutSeconds
  /// `max_shard_size` as written ("" keeps the source's sharding; see `ShardSize`).
  public var maxShardSize: String = ""
  /// `max_shard_size` in bytes; nil keeps the source's sharding.
  public var maxShardBytes: Int64?
  /// When a DeepSpeed ZeRO / Distributed Checkpoint folder is consolidated (`consolidate`).
  public var consolidate: ConsolidateMode = .auto
  /// The drop-in file this watch came from.
  public var sourceFile: String
  /// How changes are noticed (`watch`): auto (by file system), inotify, or poll (inotify plus polling).
  public var watch: WatchSetting = .auto
  /// Seconds between polls where polling is on (`poll_seconds`, fractions allowed).
  public var pollSeconds: Double = WatchConfig.defaultPollSeconds

  /// The defaults DESIGN.md gives for every optional key.
  public static let defaultPattern = "checkpoint-*"
  public static let defaultReadyMarker = "trainer_state.json"
  public static let defaultSettleSeconds = 10.0
  public static let defaultManifest = ".ckptd-manifest.jsonl"
  public static let defaultExecTimeoutSeconds = 3600.0
  public static let defaultPollSeconds = 10.0

  public init(
    path: String, format: WeightFormat, dtype: CastTarget = .keep, pattern: String = WatchConfig.defaultPattern,
    readyMarker: String = WatchConfig.defaultReadyMarker, settleSeconds: Double = WatchConfig.defaultSettleSeconds,
    keepSource: Bool = true, verify: Bool = true, manifest: String = WatchConfig.defaultManifest,
    sourceFile: String = ""
  ) {
    self.path = path
    self.format = format
    self.dtype = dtype
    self.pattern = pattern
    self.readyMarker = readyMarker
    self.settleSeconds = settleSeconds
    self.keepSource = keepSource
    self.verify = verify
    self.manifest = manifest
    self.sourceFile = sourceFile
  }

  /// The manifest's absolute path: `manifest` resolved against `path`.
  public var manifestPath: String {
    if manifest.hasPrefix("/") { return manifest }
    return path.hasSuffix("/") ? path + manifest : path + "/" + manifest
  }
}
