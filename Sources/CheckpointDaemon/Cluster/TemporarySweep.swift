import CheckpointFormats
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Removes what killed conversions left behind: ckptd's temporaries (`OutputFile.temporaryPrefix`) in a folder,
/// but only while the caller holds the folder's claim, so that no live conversion's temporary is touched.
///
/// `ckptd convert` calls it right after taking a claim; the daemon should call it the same way, after every
/// `ClaimBook.tryAcquire` that returns `.acquired` and before converting.
public enum TemporarySweep {
  /// Removes every temporary in `folder` (and the private files of claims a killed process was making) if
  /// `claim` (on that folder) is still in force; returns the names removed (sorted). Removes nothing when the
  /// claim was lost.
  @discardableResult
  public static func removeLeftovers(in folder: String, under claim: Claim) -> [String] {
    guard claim.isCurrent() else { return [] }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    // Half-made claim files are dead ends (their link can only fail now), except one of the next generation:
    // that belongs to someone taking our claim over right now, and is left to them.
    let pending = Set(
      ClaimBook.pendingNames(in: names, prefix: claim.prefix).filter {
        ClaimBook.pendingGeneration($0, prefix: claim.prefix) != claim.generation + 1
      })
    let removed = Reconcile.removeEntries(named: names, in: folder) {
      $0.hasPrefix(OutputFile.temporaryPrefix) || pending.contains($0)
    }
    if !removed.isEmpty { OutputFile.syncDirectory(folder) }
    return removed
  }
}
