import CheckpointFormats

/// What a conversion should produce and how carefully.
public struct ConversionOptions: Sendable {
  /// The format every weight file is converted to.
  public var target: WeightFormat
  /// Cast floating tensors (F16, BF16, F32, F64) to one type, or keep every dtype.
  public var dtype: CastTarget
  /// Folder the outputs go to; nil means beside the source files.
  public var outDir: String?
  /// Re-read every output before it is committed and compare each tensor with the source.
  public var verify: Bool
  /// Remove the source weight files and their index once the outputs are verified and committed.
  public var removeSource: Bool
  /// Overwrite an existing file under a target name even if ckptd did not write it.
  public var force: Bool
  /// Also compute the SHA-256 of each source file (one extra sequential read of the source).
  public var hashSources: Bool
  /// Compute the SHA-256 of every output (for the manifest and `--json`). Without it unchanged tensor
  /// bytes can be copied by the kernel and no core is spent hashing.
  public var hashOutputs: Bool = true
  /// Called with (bytes done, bytes total) as data is written and verified.
  public var progress: (@Sendable (Int64, Int64) -> Void)?
  /// Polled between chunks; returning true stops the conversion with a `.cancelled` error and removes
  /// every temporary.
  public var isCancelled: (@Sendable () -> Bool)?
  /// Asked once more right before the outputs are committed (after `isCancelled`): false stops the conversion
  /// like a cancellation, so nothing is committed. The claim's fence: is this process still the claim holder?
  public var stillOwned: (@Sendable () -> Bool)?
  /// Split the outputs into shards of at most this many bytes (`max_shard_size`, see `ShardSize`); nil keeps
  /// the source's sharding.
  public var maxShardSize: Int64?
  /// Test hook: fail with an injected I/O error once this many bytes have been written.
  public var failAfterBytes: Int64?

  public init(
    target: WeightFormat, dtype: CastTarget = .keep, outDir: String? = nil, verify: Bool = true,
    removeSource: Bool = false, force: Bool = false, hashSources: Bool = false,
    progress: (@Sendable (Int64, Int64) -> Void)? = nil, isCancelled: (@Sendable () -> Bool)? = nil,
    failAfterBytes: Int64? = nil, maxShardSize: Int64? = nil
  ) {
    self.target = target
    self.dtype = dtype
    self.outDir = outDir
    self.verify = verify
    self.removeSource = removeSource
    self.force = force
    self.hashSources = hashSources
    self.progress = progress
    self.isCancelled = isCancelled
    self.failAfterBytes = failAfterBytes
    self.maxShardSize = maxShardSize
  }
}
