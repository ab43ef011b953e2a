import CheckpointFormats
import Foundation

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

  private struct Candidate: Sendable {
    var lastChange: Double
    var lastSnapshot: FolderSnapshot?
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

  /// Starts tracking `folder` (no-op if tracked). A folder first seen counts as changed `now`, unless its
  /// files say otherwise (evaluated from their mtimes).
  public mutating func track(_ folder: String, now: Double) {
    if candidates[folder] == nil {
      candidates[folder] = Candidate(lastChange: -Double.infinity, lastSnapshot: nil)
    }
  }

  /// Something changed inside `folder` at `now` (an inotify event on it or on one of its files).
  public mutating func noteChange(in folder: String, now: Double) {
    candidates[folder, default: Candidate(lastChange: now, lastSnapshot: nil)].lastChange = now
  }

  /// Stops tracking `folder` (converted, deleted, or no longer matching).
  public mutating func forget(_ folder: String) {
    candidates[folder] = nil
  }

  /// Scans `folder` and says whether it is ready; call again after the reason's time has passed.
  public mutating func evaluate(_ folder: String, now: Double) -> Readiness {
    guard let snapshot = FolderSnapshot.take(folder) else {
      candidates[folder] = nil
      return .gone
    }
    var candidate = candidates[folder] ?? Candidate(lastChange: -Double.infinity, lastSnapshot: nil)
    let previous = candidate.lastSnapshot
    candidate.lastSnapshot = snapshot
    candidates[folder] = candidate

    if !rules.readyMarker.isEmpty && snapshot.files[rules.readyMarker] == nil {
      return .waiting("waiting for \(rules.readyMarker)")
    }
    let lastChange = max(candidate.lastChange, snapshot.newest ?? -Double.infinity)
    let quietFor = now - lastChange
    if quietFor < rules.settleSeconds {
      let left = Int((rules.settleSeconds - quietFor).rounded(.up))
      return .waiting("settling (\(max(left, 1)) s left)")
    }
    guard previous == snapshot else {
      return .waiting("settling (checking that sizes are stable)")
    }
    if snapshot.weightFiles.isEmpty && rules.readyMarker.isEmpty {
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
          if let missing = shards.first(where: { snapshot.files[$0] == nil }) {
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
