#if canImport(Glibc)
  import Glibc
#endif

/// The part of a watched directory's settings that decides when a checkpoint is finished.
public struct CompletionRules: Sendable, Equatable {
  /// fnmatch(3) pattern for checkpoint folder names, e.g. `checkpoint-*`.
  public var pattern: String
  /// The file the trainer writes last (`trainer_state.json`); empty = quiet period and structure only.
  public var readyMarker: String
  /// Seconds without any change before a checkpoint counts as finished.
  public var settleSeconds: Double
  /// Whether a folder holding a DeepSpeed ZeRO / Distributed Checkpoint also waits for every rank's files
  /// (`DistributedCheckpoint.readiness`); false when `consolidate = "never"`.
  public var waitsForDistributed = true
  /// Whether file modification times count as changes. Not on a polled (network) file system: there they come
  /// from other machines' clocks, and only what this observer saw change, on its own clock, counts.
  public var trustsFileTimes = true

  /// Creates the rules.
  public init(pattern: String = "checkpoint-*", readyMarker: String = "trainer_state.json", settleSeconds: Double = 10)
  {
    self.pattern = pattern
    self.readyMarker = readyMarker
    self.settleSeconds = settleSeconds
  }

  /// True when a folder called `name` is a checkpoint candidate.
  public func matches(_ name: String) -> Bool {
    !name.hasPrefix(".") && fnmatch(pattern, name, 0) == 0
  }

  /// Weight files the daemon converts (transformers' names); optimizer, scheduler, RNG state and
  /// `training_args.bin` are not weights.
  public static func isWeightFile(_ name: String) -> Bool {
    let patterns: [String] = [
      "model*.safetensors", "pytorch_model*.bin", "adapter_model.safetensors", "adapter_model.bin",
    ]
    return patterns.contains { fnmatch($0, name, 0) == 0 }
  }

  /// Index files (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) that list shards.
  public static func isIndexFile(_ name: String) -> Bool {
    let patterns: [String] = [
      "model*.safetensors.index.json", "pytorch_model*.bin.index.json", "adapter_model*.index.json",
    ]
    return patterns.contains { fnmatch($0, name, 0) == 0 }
  }
}
