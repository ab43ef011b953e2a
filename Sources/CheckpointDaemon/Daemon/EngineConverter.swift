import CheckpointConversion
import CheckpointFormats

/// The real conversion: `CheckpointConversion.Consolidator.convert` (a distributed checkpoint consolidated
/// per `consolidate`, otherwise `Converter`) with a watched directory's settings.
public struct EngineConverter: CheckpointConverting {
  /// Creates the converter.
  public init() {}

  /// Converts `folder` in place (outputs beside the sources), with SHA-256 of sources and outputs for the
  /// manifest.
  public func convert(
    folder: String, watch: WatchConfig, isCancelled: @escaping @Sendable () -> Bool,
    progress: @escaping @Sendable (Int64, Int64) -> Void
  ) throws -> ConversionOutcome {
    try convert(folder: folder, watch: watch, isCancelled: isCancelled, stillOwned: { true }, progress: progress)
  }

  /// Converts `folder` under a claim: `stillOwned` is asked right before the commit.
  public func convert(
    folder: String, watch: WatchConfig, isCancelled: @escaping @Sendable () -> Bool,
    stillOwned: @escaping @Sendable () -> Bool, progress: @escaping @Sendable (Int64, Int64) -> Void
  ) throws -> ConversionOutcome {
    var options = ConversionOptions(
      target: watch.format, dtype: watch.dtype, verify: watch.verify, removeSource: !watch.keepSource,
      hashSources: true, progress: progress, isCancelled: isCancelled, maxShardSize: watch.maxShardBytes)
    options.stillOwned = stillOwned
    let consolidating = try Consolidator.shouldConsolidate(folder: folder, mode: watch.consolidate)
    let result = try Consolidator.convert(path: folder, mode: watch.consolidate, options: options)
    func files(_ records: [ConversionResult.FileRecord]) -> [ManifestFile] {
      records.map { record in
        let name = record.path.hasPrefix(folder + "/") ? String(record.path.dropFirst(folder.count + 1)) : record.path
        return ManifestFile(name: name, bytes: record.bytes, sha256: record.sha256)
      }
    }
    var outcome = ConversionOutcome(
      sources: files(result.sources), outputs: files(result.outputs), tensors: result.tensorCount,
      verified: result.verified, removedSource: !result.removedSources.isEmpty)
    outcome.sourceKind = Self.sourceKind(consolidating ? DistributedCheckpoint.detect(folder: folder) : nil)
    switch result.outcome {
    case .converted: break
    case .alreadyInTargetFormat: outcome.skippedReason = "already in the target format"
    case .noWeights: outcome.skippedReason = "no weight files"
    }
    return outcome
  }

  /// The manifest's `source_kind` for what was read: nil (ordinary weights), ZeRO or DCP.
  static func sourceKind(_ kind: DistributedKind?) -> String {
    switch kind {
    case .none: "weights"
    case .zero: "deepspeed"
    case .dcp: "dcp"
    }
  }
}
