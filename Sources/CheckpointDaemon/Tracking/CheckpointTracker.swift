import CheckpointConversion
import CheckpointFormats
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Why a checkpoint is or is not ready to convert.
public enum Readiness: Sendable, Equatable {
  /// Finished: marker present, quiet for the settle time, stable across two scans, structurally complete.
  case ready
  /// Not yet, with the reason the status file shows.
  case waiting(String)
  /// The folder does not exist any more.
  case gone
}

/// Decides when a checkpoint folder is finished being written.
///
/// The tracker keeps, per folder, the time of the last change it heard of and the snapshot of the last
/// scan. A folder is ready when the ready marker exists (closed after writing: either an IN_CLOSE_WRITE /
/// IN_MOVED_TO was seen, or it was there when scanned), nothing changed for `settleSeconds` (events and
/// file mtimes), two consecutive scans saw the same sizes and mtimes, and every weight file is structurally
/// complete (`structuralCheck` throwing `.truncated` = still being written; an index's shards all exist).
public struct CheckpointTracker: Sendable {
  /// When a folder counts as finished.
  public var rules: CompletionRules
  /// Checks one weight file; throwing `CheckpointError` with `.truncated` means it is still being written.
  public var structuralCheck: @Sendable (String) throws -> Void

  /// When a waiting folder should be evaluated again, if nothing else happens in it meanwhile.
  public enum Recheck: Sendable, Equatable {
    /// Only when an event says something changed (a marker or a file still to be written).
    case onChange
    /// After this many seconds (the rest of the settle time).
    case after(Double)
    /// After a short delay, to see that sizes and mtimes are stable across two scans.
    case stability
  }

  private struct Candidate: Sendable {
    var lastChange: Double
    var lastSnapshot: FolderSnapshot?
    var recheck = Recheck.onChange
    /// The rank files' sizes at the last evaluation, for a distributed checkpoint.
    var distributed: DistributedCheckpoint.Snapshot?
  }

  private var candidates: [String: Candidate] = [:]

  /// Creates a tracker; by default weight files are checked by opening them with the format readers.
  public init(
    rules: CompletionRules,
    structuralCheck: @escaping @Sendable (String) throws -> Void = { _ = try WeightFile.open(path: $0) }
  ) {
    self.rules = rules
    self.structuralCheck = structuralCheck
  }

  /// The folders being tracked (full paths).
  public var folders: [String] { candidates.keys.sorted() }

  /// True when `folder` is tracked.
  public func isTracking(_ folder: String) -> Bool { candidates[folder] != nil }

  /// Starts tracking `folder` (no-op if tracked). A folder first seen counts as changed `now` (its history
  /// is unknown), unless its files' mtimes are newer still.
  public mutating func track(_ folder: String, now: Double) {
    if candidates[folder] == nil {
      candidates[folder] = Candidate(lastChange: now, lastSnapshot: nil)
    }
  }

  /// When `folder` should be evaluated again after its last `evaluate` said it waits.
  public func recheck(_ folder: String) -> Recheck { candidates[folder]?.recheck ?? .onChange }

  /// Something changed inside `folder` at `now` (an inotify event on it or on one of its files).
  public mutating func noteChange(in folder: String, now: Double) {
    candidates[folder, default: Candidate(lastChange: now, lastSnapshot: nil)].lastChange = now
  }

  /// A poll saw `snapshot` of `folder` at `now`: when it differs from the last one seen, that is a change (the
  /// settle time starts again), and the stability check compares the next evaluation with this snapshot, so a
  /// folder is ready only when polls at least `settleSeconds` apart saw it unchanged. Returns whether it changed.
  @discardableResult
  public mutating func observe(_ folder: String, snapshot: FolderSnapshot, now: Double) -> Bool {
    guard var candidate = candidates[folder] else { return false }
    guard candidate.lastSnapshot != snapshot else { return false }
    candidate.lastSnapshot = snapshot
    candidate.lastChange = now
    candidates[folder] = candidate
    return true
  }

  /// Stops tracking `folder` (converted, deleted, or no longer matching).
  public mutating func forget(_ folder: String) {
    candidates[folder] = nil
  }

  /// Scans `folder` and says whether it is ready; call again after the reason's time has passed.
  public mutating func evaluate(_ folder: String, now: Double) -> Readiness {
    guard let snapshot = FolderSnapshot.take(folder, keep: rules.readyMarker) else {
      // Still there but unreadable (permissions): keep it, and say why it waits.
      if let reason = Self.unreadable(folder) { return .waiting(reason) }
      candidates[folder] = nil
      return .gone
    }
    var candidate = candidates[folder] ?? Candidate(lastChange: -Double.infinity, lastSnapshot: nil)
    let previous = candidate.lastSnapshot
    candidate.lastSnapshot = snapshot
    candidate.recheck = .onChange
    candidates[folder] = candidate

    if !rules.readyMarker.isEmpty && snapshot.files[rules.readyMarker] == nil {
      return .waiting("waiting for \(rules.readyMarker)")
    }
    let lastChange =
      rules.trustsFileTimes ? max(candidate.lastChange, snapshot.newest ?? -Double.infinity) : candidate.lastChange
    let quietFor = now - lastChange
    if quietFor < rules.settleSeconds {
      let left = rules.settleSeconds - quietFor
      candidates[folder]?.recheck = .after(left)
      return .waiting("settling (\(max(Int(left.rounded(.up)), 1)) s left)")
    }
    guard previous == snapshot else {
      candidates[folder]?.recheck = .stability
      return .waiting("settling (checking that sizes are stable)")
    }
    var distributedReady = false
    if rules.waitsForDistributed {
      // A DeepSpeed / DCP checkpoint: every rank's file, `latest` naming an existing tag, `.metadata`,
      // and rank file sizes unchanged since the last evaluation (see `DistributedCheckpoint.readiness`).
      let (state, sizes) = DistributedCheckpoint.readiness(folder: folder, previous: candidate.distributed)
      candidates[folder]?.distributed = sizes
      switch state {
      case .notDistributed: break
      case .ready: distributedReady = true
      case .waiting(let reason):
        // Rank files land in `global_stepN/` or a DCP subfolder, which raise no event on this folder.
        candidates[folder]?.recheck = .stability
        return .waiting(reason)
      }
    }
    if snapshot.weightFiles.isEmpty && rules.readyMarker.isEmpty && !distributedReady {
      return .waiting("no weight files yet")
    }
    if let reason = structuralProblem(folder, snapshot: snapshot) {
      return .waiting(reason)
    }
    return .ready
  }

  /// The first reason a weight file is not complete, or nil.
  private func structuralProblem(_ folder: String, snapshot: FolderSnapshot) -> String? {
    for name in snapshot.weightFiles {
      let path = folder + "/" + name
      if CompletionRules.isIndexFile(name) {
        switch Self.shards(ofIndex: path) {
        case .none: return "\(name) incomplete"
        case .some(let shards):
          // A shard that is not a plain file name ("../x", "/etc/passwd") or is a symlink is the conversion's
          // to refuse: waiting for it would hold the checkpoint forever.
          if let missing = shards.first(where: { shard in
            Self.isPlainName(shard) && snapshot.files[shard] == nil && !Self.exists(folder + "/" + shard)
          }) {
            return "waiting for \(missing) (listed in \(name))"
          }
        }
        continue
      }
      do {
        try structuralCheck(path)
      } catch let error as CheckpointError where error.code == .truncated {
        return "\(name) incomplete"
      } catch {
        // Any other problem is the conversion's to report: the file is as finished as it will get.
        continue
      }
    }
    return nil
  }

  /// Why an existing folder cannot be listed (e.g. "cannot read the folder: Permission denied"); nil when it
  /// is gone or readable.
  static func unreadable(_ folder: String) -> String? {
    var info = stat()
    guard lstat(folder, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { return nil }
    guard let dir = opendir(folder) else { return "cannot read the folder: \(String(cString: strerror(errno)))" }
    closedir(dir)
    return nil
  }

  /// True for a file name without a folder part (no `/`, not `.` or `..`, not empty).
  static func isPlainName(_ name: String) -> Bool {
    !name.isEmpty && name != "." && name != ".." && !name.contains("/")
  }

  /// True when something (file, folder, symlink) is at `path`.
  static func exists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
  }

  /// The shard names of an index's `weight_map`; nil when the JSON does not parse (still being written).
  static func shards(ofIndex path: String) -> [String]? {
    guard let file = try? ReadableFile(path: path), file.size < 16 << 20,
      let bytes = try? file.readBytes(at: 0, count: Int(file.size)),
      let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
      let map = object["weight_map"] as? [String: Any]
    else { return nil }
    return Set(map.values.compactMap { $0 as? String }).sorted()
  }
}
