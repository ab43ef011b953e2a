import CheckpointFormats

/// What a conversion did: the summary `--json` prints and the daemon records in its manifest.
public struct ConversionResult: Sendable, Codable {
  /// How the checkpoint was found.
  public enum Outcome: String, Sendable, Codable {
    /// Weights were converted.
    case converted
    /// Every weight file already is in the target format: nothing was touched.
    case alreadyInTargetFormat = "already_in_target_format"
    /// No weight files were found.
    case noWeights = "no_weights"
  }

  /// One file: path, size and SHA-256 (nil when not computed).
  public struct FileRecord: Sendable, Codable, Equatable {
    public var path: String
    public var bytes: Int64
    public var sha256: String?

    public init(path: String, bytes: Int64, sha256: String?) {
      self.path = path
      self.bytes = bytes
      self.sha256 = sha256
    }
  }

  /// The folder or file that was converted, as given.
  public var path: String
  public var outcome: Outcome
  public var target: WeightFormat
  public var dtype: CastTarget
  /// Source weight files and indexes.
  public var sources: [FileRecord]
  /// Files written (weights and indexes), committed under their final names.
  public var outputs: [FileRecord]
  /// Number of tensor names written (aliases included).
  public var tensorCount: Int
  /// Files left alone, with the reason.
  public var skipped: [SkippedFile]
  /// Source files removed after verification (`removeSource`).
  public var removedSources: [String]
  /// True if every output was re-read and compared with the source before it was committed.
  public var verified: Bool
  /// Wall-clock time of the whole conversion.
  public var seconds: Double

  public init(
    path: String, outcome: Outcome, target: WeightFormat, dtype: CastTarget, sources: [FileRecord] = [],
    outputs: [FileRecord] = [], tensorCount: Int = 0, skipped: [SkippedFile] = [], removedSources: [String] = [],
    verified: Bool = false, seconds: Double = 0
  ) {
    self.path = path
    self.outcome = outcome
    self.target = target
    self.dtype = dtype
    self.sources = sources
    self.outputs = outputs
    self.tensorCount = tensorCount
    self.skipped = skipped
    self.removedSources = removedSources
    self.verified = verified
    self.seconds = seconds
  }
}
