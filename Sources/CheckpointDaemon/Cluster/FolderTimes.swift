#if canImport(Glibc)
  import Glibc
#endif

/// A folder's access and modification times, taken before a claim file comes and goes in it and put back after:
/// the Trainer rotates checkpoints by folder mtime, and a claim must not make an old checkpoint look new.
public struct FolderTimes: Sendable {
  /// The folder.
  public let folder: String
  private let times: (timespec, timespec)?

  /// Reads the folder's times now (nothing to restore when it cannot be read).
  public init(_ folder: String) {
    self.folder = folder
    var info = stat()
    times = stat(folder, &info) == 0 ? (info.st_atim, info.st_mtim) : nil
  }

  /// Puts the times back.
  public func restore() {
    guard let times else { return }
    var pair = [times.0, times.1]
    _ = utimensat(AT_FDCWD, folder, &pair, 0)
  }
}

/// A claim this process holds on a checkpoint folder, with the folder's times from before it was taken.
public struct HeldClaim: Sendable {
  /// The claim.
  public let claim: Claim
  /// Restored when the claim is released.
  public let times: FolderTimes

  public init(_ claim: Claim, times: FolderTimes) {
    self.claim = claim
    self.times = times
  }

  /// Releases the claim (its file removed if still ours) and restores the folder's times.
  public func release() {
    claim.release()
    times.restore()
  }
}
