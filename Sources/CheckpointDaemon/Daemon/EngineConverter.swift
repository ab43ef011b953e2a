import CheckpointConversion
import CheckpointFormats

/// The real conversion: `CheckpointConversion.Converter` with a watched directory's settings.
public struct EngineConverter: CheckpointConverting {
  /// Creates the converter.
  public init() {}

  /// Converts `folder` in place (outputs beside the sources), with SHA-256 of sources and outputs for the
  /// manifest.
  public func convert(
    folder: String, watch: WatchConfig, isCancelled: @escaping @Sendable () -> Bool,
    progress: @escaping @Sendable (Int64, Int64) -> Void
  ) throws -> ConversionOutcome {
    let options = ConversionOptions(
      target: watch.format, dtype: watch.dtype, verify: watch.verify, removeSource: !watch.keepSource,
      hashSources: true, progress: progress, isCancelled: isCancelled, maxShardSize: watch.maxShardBytes)
    let result = try Converter.convert(path: folder, options: options)
    func files(_ records: [ConversionResult.FileRecord]) -> [ManifestFile] {
      records.map { record in
        let name = record.path.hasPrefix(folder + "/") ? String(record.path.dropFirst(folder.count + 1)) : record.path
        return ManifestFile(name: name, bytes: record.bytes, sha256: record.sha256)
      }
    }
    var outcome = ConversionOutcome(
      sources: files(result.sources), outputs: files(result.outputs), tensors: result.tensorCount,
      verified: result.verified, removedSource: !result.removedSources.isEmpty)
    switch result.outcome {
    case .converted: break
    case .alreadyInTargetFormat: outcome.skippedReason = "already in the target format"
    case .noWeights: outcome.skippedReason = "no weight files"
    }
    return outcome
  }
}
