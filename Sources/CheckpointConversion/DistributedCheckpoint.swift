import CLinux
import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

/// When a distributed checkpoint is consolidated into ordinary weights (`consolidate` in the config,
/// `--consolidate` on the command line).
public enum ConsolidateMode: String, Sendable, Codable, CaseIterable {
  /// Only when the folder has no model weights of its own.
  case auto
  /// Even when it has (e.g. to get the fp32 master weights).
  case always
  /// Never: distributed folders are left alone.
  case never
}

/// The daemon's view of distributed checkpoints: what a folder holds and whether it is complete. Pure
/// functions of the file system; the caller keeps the previous `Snapshot` between polls.
///
/// A daemon calls `readiness(folder:previous:)` each time it would declare a checkpoint ready, stores the
/// returned snapshot, and converts only on `.ready`; `.waiting(reason)` goes to the status file as is.
/// `Consolidator.shouldConsolidate(folder:mode:)` then says whether to call `Consolidator.consolidate`
/// instead of (or, for `always`, besides) `Converter.convert`.
public enum DistributedCheckpoint {
  /// The kind of distributed checkpoint in `folder` (DCP also in a subfolder such as
  /// `pytorch_model_fsdp_0/`), judged by names only; nil for an ordinary folder.
  public static func detect(folder: String) -> DistributedKind? {
    if ZeroCheckpoint.looksLike(folder: folder) { return .zero(stage: 0) }
    if !DCPCheckpoint.modelFolders(in: folder).isEmpty { return .dcp }
    return nil
  }

  /// Reads the consolidated model's descriptors (no tensor data): ZeRO, or the first DCP model folder.
  public static func read(folder: String) throws -> DistributedModel {
    if ZeroCheckpoint.looksLike(folder: folder) { return try ZeroCheckpoint.read(folder: folder) }
    guard let dcp = DCPCheckpoint.modelFolders(in: folder).first else {
      throw CheckpointError(.invalidFormat, path: folder, "holds no DeepSpeed ZeRO or Distributed Checkpoint files")
    }
    return try DCPCheckpoint.read(folder: dcp)
  }

  /// Sizes of the files a distributed checkpoint is made of, to tell when they stopped changing.
  public struct Snapshot: Sendable, Equatable {
    public var sizes: [String: Int64]
    public init(sizes: [String: Int64] = [:]) { self.sizes = sizes }
  }

  /// Whether a folder's distributed checkpoint can be consolidated now.
  public enum Readiness: Sendable, Equatable {
    /// Not a distributed checkpoint: ordinary rules apply.
    case notDistributed
    /// Every rank's files are present, complete and unchanged since the previous snapshot.
    case ready(DistributedKind)
    /// What it waits for, for the status file ("waiting for: rank 1 optimizer file").
    case waiting(String)
  }

  /// Checks the completion rules: every rank's partition file present (as many as `partition_count` /
  /// the ranks `.metadata` names), each a complete archive, `latest` naming an existing tag, DCP
  /// `.metadata` present (renamed into place last), sizes equal to `previous` (pass nil the first
  /// time), and for a Trainer folder `trainer_state.json` present (ZeRO-3 Trainer saves write
  /// `global_stepN/` twice; the state file comes after the second pass).
  public static func readiness(folder: String, previous: Snapshot?) -> (Readiness, Snapshot) {
    let kind = detect(folder: folder)
    guard let kind else { return (.notDistributed, Snapshot()) }
    var snapshot = Snapshot()
    func waiting(_ reason: String) -> (Readiness, Snapshot) { (.waiting("waiting for: " + reason), snapshot) }
    let names = Set(DistributedFolderNames.list(folder))
    let trainerFiles = ["training_args.bin", "scheduler.pt", "config.json"]
    if trainerFiles.contains(where: names.contains) || names.contains(where: { $0.hasPrefix("rng_state") }),
      !names.contains("trainer_state.json")
    {
      return waiting("trainer_state.json (the Trainer writes it after its last save pass)")
    }
    let files: [String]
    let model: DistributedModel
    switch kind {
    case .zero:
      guard names.contains("latest") else { return waiting("latest") }
      let layout: ZeroCheckpoint.Layout
      do { layout = try ZeroCheckpoint.layout(folder: folder) } catch {
        return waiting("the tag folder 'latest' names")
      }
      if layout.optimFiles.isEmpty { return waiting("rank 0 optimizer file in \(layout.tag)") }
      do {
        model = try ZeroCheckpoint.read(folder: folder)
      } catch let error as CheckpointError {
        return waiting(zeroReason(error, layout: layout))
      } catch {
        return waiting("readable rank files")
      }
      files = layout.modelFiles + layout.optimFiles
    case .dcp:
      var all: [String] = []
      var last: DistributedModel?
      for dcp in DCPCheckpoint.modelFolders(in: folder) {
        guard DistributedFolderNames.list(dcp).contains(".metadata") else {
          return waiting(".metadata in \(OutputFile.split(dcp).1) (written last)")
        }
        do { last = try DCPCheckpoint.read(folder: dcp) } catch let error as CheckpointError {
          return waiting("complete rank files (\(error.description))")
        } catch {
          return waiting("complete rank files")
        }
        all += DistributedFolderNames.list(dcp).filter { $0.hasSuffix(".distcp") || $0 == ".metadata" }.map {
          dcp + "/" + $0
        }
      }
      guard let last else { return waiting(".metadata") }
      model = last
      files = all
    }
    for path in files {
      var info = stat()
      guard stat(path, &info) == 0 else { return waiting(path) }
      snapshot.sizes[path] = Int64(info.st_size)
    }
    guard let previous, previous == snapshot else { return waiting("stable sizes of the rank files") }
    return (.ready(model.kind), snapshot)
  }

  /// The status line for a ZeRO folder that does not read yet.
  static func zeroReason(_ error: CheckpointError, layout: ZeroCheckpoint.Layout) -> String {
    if error.message.contains("_optim_states.pt files") {
      return "every rank's optimizer file in \(layout.tag) (\(error.message))"
    }
    if error.message.contains("_model_states.pt") {
      return "every rank's model states file in \(layout.tag) (\(error.message))"
    }
    return "complete rank files (\(error.description))"
  }
}

/// Folder listing for the readiness check (names only, hidden files included).
enum DistributedFolderNames {
  static func list(_ folder: String) -> [String] { DistributedFolder.names(folder) ?? [] }
}
