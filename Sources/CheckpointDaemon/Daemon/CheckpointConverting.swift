/// What one conversion of a checkpoint folder produced.
public struct ConversionOutcome: Sendable, Equatable {
  /// Source weight files read (names relative to the folder).
  public var sources: [ManifestFile]
  /// Files written.
  public var outputs: [ManifestFile]
  /// Tensors converted.
  public var tensors: Int
  /// The outputs were re-read and compared with the source.
  public var verified: Bool
  /// The source weight files were removed after a verified conversion.
  public var removedSource: Bool
  /// `weights`, `deepspeed` or `dcp` (the manifest's `source_kind`); nil when the converter does not say.
  public var sourceKind: String?
  /// Set when there was nothing to do (already in the target format, no weights): recorded as `skipped`.
  public var skippedReason: String?

  /// Creates an outcome.
  public init(
    sources: [ManifestFile] = [], outputs: [ManifestFile] = [], tensors: Int = 0,
    verified: Bool = false,
    removedSource: Bool = false, skippedReason: String? = nil
  ) {
    self.sources = sources
    self.outputs = outputs
    self.tensors = tensors
    self.verified = verified
    self.removedSource = removedSource
    self.skippedReason = skippedReason
  }
}

/// Converts one checkpoint folder as a watched directory's settings say. Called on a worker thread; blocking
/// I/O is expected. Throws `CheckpointError` (`.vanished` when the folder disappears under it).
public protocol CheckpointConverting: Sendable {
  /// Converts `folder`; polls `isCancelled` between chunks and reports `progress(done, total)` bytes.
  func convert(
    folder: String, watch: WatchConfig, isCancelled: @escaping @Sendable () -> Bool,
    progress: @escaping @Sendable (Int64, Int64) -> Void
  ) throws -> ConversionOutcome

  /// The same, under a claim: `stillOwned` is asked right before the outputs are committed, and false stops the
  /// conversion as a cancellation (nothing committed). By default it is asked with every `isCancelled`.
  func convert(
    folder: String, watch: WatchConfig, isCancelled: @escaping @Sendable () -> Bool,
    stillOwned: @escaping @Sendable () -> Bool, progress: @escaping @Sendable (Int64, Int64) -> Void
  ) throws -> ConversionOutcome
}

extension CheckpointConverting {
  public func convert(
    folder: String, watch: WatchConfig, isCancelled: @escaping @Sendable () -> Bool,
    stillOwned: @escaping @Sendable () -> Bool, progress: @escaping @Sendable (Int64, Int64) -> Void
  ) throws -> ConversionOutcome {
    try convert(folder: folder, watch: watch, isCancelled: { isCancelled() || !stillOwned() }, progress: progress)
  }
}
