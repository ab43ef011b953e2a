import CheckpointFormats
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Start-up and rescan helpers: what a checkpoint folder looks like against the manifest.
public enum Reconcile {
  /// Removes ckptd's own temporaries (`OutputFile.temporaryPrefix`) from `folder`, left by an interrupted
  /// run; returns the names removed.
  @discardableResult
  public static func removeStaleTemporaries(in folder: String) -> [String] {
    removeEntries(named: (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [], in: folder) {
      $0.hasPrefix(OutputFile.temporaryPrefix)
    }
  }

  /// Unlinks the entries of `folder` among `names` that `matching` picks; returns the names removed, sorted.
  static func removeEntries(named names: [String], in folder: String, where matching: (String) -> Bool) -> [String] {
    names.filter { matching($0) && unlink(ClaimBook.join(folder, $0)) == 0 }.sorted()
  }

  /// The sub-folders of `root` whose names match `rules`, sorted by name.
  public static func checkpointFolders(in root: String, rules: CompletionRules) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
    return names.filter { name in
      guard rules.matches(name) else { return false }
      var info = stat()
      return lstat(root + "/" + name, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }.sorted()
  }

  /// True when the manifest's latest record for the checkpoint says it is done (converted or skipped)
  /// and every output it lists is still in the folder.
  public static func isDone(_ record: ManifestRecord?, folder: String) -> Bool {
    guard let record else { return false }
    switch record.event {
    case .converted, .removedSource, .skipped:
      return record.outputs.allSatisfy {
        FileManager.default.fileExists(atPath: folder + "/" + $0.name)
      }
    case .failed, .vanished, .exec:
      return false
    }
  }

  /// True when a failure recorded at `record.start` still applies: not retryable, and no weight file in
  /// `snapshot` changed since.
  public static func failureStillApplies(_ record: ManifestRecord?, snapshot: FolderSnapshot?)
    -> Bool
  {
    guard let record, record.event == .failed, record.retryable == false, let snapshot else {
      return false
    }
    let newest = snapshot.weightFiles.compactMap { snapshot.files[$0]?.mtime }.max() ?? 0
    return newest <= record.start.timeIntervalSince1970
  }
}
