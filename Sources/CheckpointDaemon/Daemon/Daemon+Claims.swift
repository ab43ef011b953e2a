import CheckpointConversion
import CheckpointFormats
import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// What taking a checkpoint's claim before its conversion came to.
enum ClaimStep {
  /// Convert, under this claim (nil: the folder cannot hold a claim file, e.g. read-only; converted as before).
  case convert(HeldClaim?)
  /// Another process holds a live claim on it.
  case held(ClaimHolder)
  /// The manifest, read under the claim, says another instance converted it already.
  case done
  /// The claim file could not be made (a full or failing file system).
  case failed(CheckpointError)
}

/// Claims and the manifest lock (DESIGN.md "Shared file systems and several nodes"): every conversion runs under its
/// checkpoint's claim, kept fresh on the daemon's clock and released once its manifest record is durable; every
/// manifest change is made under the directory's lock file.
extension Daemon {
  /// How often a held claim is refreshed: `claim_ttl_seconds / 4`.
  var claimBeat: Duration { claimBook.ttl / 4 }

  /// How soon a checkpoint claimed by someone else is looked at again (each look counts towards staleness).
  var claimRecheck: Duration { max(min(claimBook.ttl / 4, .seconds(5)), .milliseconds(20)) }

  /// How soon a held manifest lock is tried again (it is held for one append and fsync).
  static let lockRetry = Duration.milliseconds(20)

  /// Claims `job`'s folder before it is converted. Under the claim: the manifest is read again, fresh (another
  /// instance may have converted the checkpoint and released its claim since this one last looked), and
  /// leftovers of killed conversions are removed.
  func claimForConversion(_ job: Job, root: WatchedRoot) -> ClaimStep {
    let times = FolderTimes(job.folder)
    let outcome: ClaimOutcome
    do {
      outcome = try claimBook.tryAcquire(folder: job.folder)
    } catch let error as CheckpointError where [EACCES, EPERM, EROFS].contains(error.errno ?? 0) {
      return .convert(nil)
    } catch {
      return .failed(error as? CheckpointError ?? CheckpointError(.io, path: job.folder, "\(error)"))
    }
    switch outcome {
    case .held(let holder):
      return .held(holder)
    case .acquired(let claim, let tookOver):
      let held = HeldClaim(claim, times: times)
      if let tookOver {
        logger.notice(
          "\(job.folder): took over the claim of \(tookOver.description), unchanged for \(tookOver.unchangedFor)")
      }
      if Reconcile.isDone(root.freshRecords()[job.name], folder: job.folder) {
        held.release()
        return .done
      }
      let removed = TemporarySweep.removeLeftovers(in: job.folder, under: claim)
      if !removed.isEmpty { logger.notice("removed stale temporaries in \(job.folder): \(removed)") }
      return .convert(held)
    }
  }

  /// What the status file says of a checkpoint someone else holds.
  static func heldReason(_ holder: ClaimHolder) -> String {
    "claimed by \(holder.description) (converting it on another instance)"
  }

  /// Refreshes every held claim whose beat is due: running conversions' and those of records waiting for the
  /// manifest lock. A claim found taken over stops its conversion, which then commits nothing.
  func refreshClaims(now: Duration) {
    for (folder, job) in running {
      guard let held = job.claim, let at = job.beatAt, at <= now else { continue }
      running[folder]?.beatAt = now + claimBeat
      do {
        try held.claim.refresh()
      } catch let error as CheckpointError where error.code == .cancelled {
        logger.warning("\(error.description)")
        running[folder]?.claimLost = true
        job.token.cancel()
      } catch {
        let text = (error as? CheckpointError)?.description ?? "\(error)"
        logger.error("cannot refresh the claim on \(folder): \(text)")
      }
    }
    for root in roots.values {
      for index in root.unrecorded.indices {
        guard let held = root.unrecorded[index].claim, root.unrecorded[index].beatAt <= now else { continue }
        root.unrecorded[index].beatAt = now + claimBeat
        try? held.claim.refresh()
      }
    }
  }

  /// The earliest claim refresh due.
  var nextClaimBeat: Duration? {
    let jobs = running.values.compactMap(\.beatAt).min()
    let waiting = roots.values.flatMap { $0.unrecorded.filter { $0.claim != nil }.map(\.beatAt) }.min()
    return [jobs, waiting].compactMap { $0 }.min()
  }

  // MARK: Manifest records

  /// Writes `lines` into `root`'s manifest under its lock: now, or as soon as another process lets go of it.
  /// `claim` is released once the lines are durable (or could not be written).
  func record(_ lines: [ManifestRecord], in root: WatchedRoot, releasing claim: HeldClaim?) {
    root.unrecorded.append(UnrecordedLines(lines: lines, claim: claim, beatAt: clock.now() + claimBeat))
    flushRecords(root)
  }

  /// Tries the lock and writes every waiting record in one append and one fsync.
  func flushRecords(_ root: WatchedRoot) {
    guard !root.unrecorded.isEmpty else {
      root.lockRetryAt = nil
      return
    }
    let outcome: ClaimOutcome
    do {
      outcome = try root.manifestLock.tryLock()
    } catch {
      // No lock file can be made beside the manifest (a read-only or full folder): append without it, as one
      // instance alone would; the append reports its own error.
      writeRecords(root, locked: false)
      return
    }
    switch outcome {
    case .acquired(let lock, _):
      defer { lock.release() }
      guard lock.isCurrent() else {
        root.lockRetryAt = clock.now() + Self.lockRetry
        return
      }
      writeRecords(root, locked: true)
    case .held:
      // A lock seen unchanged for claim_ttl_seconds is taken over by a later try (the book keeps the count).
      root.lockRetryAt = clock.now() + Self.lockRetry
    }
  }

  private func writeRecords(_ root: WatchedRoot, locked: Bool) {
    let batch = root.unrecorded
    root.unrecorded = []
    root.lockRetryAt = nil
    let lines = batch.flatMap(\.lines)
    do {
      if locked {
        var bytes: [UInt8] = []
        for line in lines { bytes += try Manifest.encodeLine(line, path: root.manifest.path) }
        try ManifestLock.appendLocked(path: root.manifest.path, lines: bytes)
      } else {
        for line in lines { try root.manifest.append(line) }
      }
      for line in lines { root.counts[line.event.rawValue, default: 0] += 1 }
    } catch {
      let text = (error as? CheckpointError)?.description ?? "\(error)"
      logger.error("cannot append to the manifest: \(text)")
      let what = lines.map { "\($0.event.rawValue) \($0.checkpoint)" }.joined(separator: ", ")
      root.manifestError = "cannot record \(what): \(text)"
    }
    for item in batch { item.claim?.release() }
  }

  // MARK: Leftovers

  /// Notes the checkpoint folders of `root` that hold leftovers of killed conversions (temporaries, half-made
  /// claim files, claims of dead holders) and sweeps each once its claim is free.
  func findLeftovers(_ root: WatchedRoot) {
    for name in Reconcile.checkpointFolders(in: root.path, rules: root.tracker.rules)
    where !root.converting.contains(name) {
      let folder = root.folder(name)
      if Self.hasLeftovers(folder) { root.leftovers.insert(folder) }
    }
    sweepLeftovers(root)
  }

  /// Sweeps each folder in `root.leftovers` whose claim can be taken now; the others are tried again later
  /// (a live holder's temporaries are never touched).
  func sweepLeftovers(_ root: WatchedRoot) {
    for folder in root.leftovers.sorted() {
      let name = (folder as NSString).lastPathComponent
      guard !root.converting.contains(name), Self.isDirectory(folder) else {
        // A conversion sweeps its own folder under its claim; a folder gone has nothing left.
        root.leftovers.remove(folder)
        continue
      }
      let times = FolderTimes(folder)
      switch try? claimBook.tryAcquire(folder: folder) {
      case .acquired(let claim, _):
        let removed = TemporarySweep.removeLeftovers(in: folder, under: claim)
        HeldClaim(claim, times: times).release()
        if !removed.isEmpty { logger.notice("removed stale temporaries in \(folder): \(removed)") }
        root.leftovers.remove(folder)
      case .held:
        continue
      case nil:
        // No claim can be made here (permissions): nothing of ours can be either.
        root.leftovers.remove(folder)
      }
    }
    root.sweepAt = root.leftovers.isEmpty ? nil : clock.now() + claimRecheck
  }

  /// Whether `folder` holds a temporary of ours, a half-made claim or any claim file.
  static func hasLeftovers(_ folder: String) -> Bool {
    guard let names = DistributedFolder.names(folder) else { return false }
    return names.contains { $0.hasPrefix(OutputFile.temporaryPrefix) || $0.hasPrefix(ClaimBook.checkpointPrefix) }
  }

  /// Removes what `job`'s conversion left: under its claim when it has one (and only while the claim is ours),
  /// otherwise every temporary in the folder.
  func removeOwnTemporaries(_ job: Job) {
    if let held = job.claim {
      TemporarySweep.removeLeftovers(in: job.folder, under: held.claim)
    } else {
      Reconcile.removeStaleTemporaries(in: job.folder)
    }
  }
}
