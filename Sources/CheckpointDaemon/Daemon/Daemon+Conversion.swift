import CheckpointFormats
import Foundation
import Logging
import Synchronization
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// When a tracked folder is evaluated next.
struct Due: Sendable, Equatable {
  var root: String
  var at: Duration
}

/// A directory's device and inode.
struct FileIdentity: Sendable, Equatable {
  var device: UInt64
  var inode: UInt64

  init?(path: String) {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    device = UInt64(info.st_dev)
    inode = UInt64(info.st_ino)
  }

  /// The identity of an open directory; nil when it was removed (no links left).
  init?(_ handle: FileDescriptor) {
    var info = stat()
    guard fstat(handle.rawValue, &info) == 0, info.st_nlink > 0 else { return nil }
    device = UInt64(info.st_dev)
    inode = UInt64(info.st_ino)
  }
}

/// Lets through about one progress report per percent (and the last): the engine reports every chunk.
final class ProgressGate: Sendable {
  private let last = Atomic<Int64>(-1)

  func passes(done: Int64, total: Int64) -> Bool {
    let previous = last.load(ordering: .relaxed)
    guard previous < 0 || done >= total || done - previous >= max(total / 100, 1) else { return false }
    last.store(done, ordering: .relaxed)
    return true
  }
}

extension Daemon {
  /// Evaluates every tracked folder whose time has come; queues the ready ones.
  func evaluateDue() {
    let now = clock.now()
    let due = folderDue.filter { $0.value.at <= now }.sorted { $0.key < $1.key }
    for (folder, entry) in due {
      folderDue[folder] = nil
      guard let root = roots[entry.root], root.present, root.tracker.isTracking(folder) else { continue }
      evaluate(root, folder: folder, now: now)
    }
  }

  private func evaluate(_ root: WatchedRoot, folder: String, now: Duration) {
    let name = (folder as NSString).lastPathComponent
    if root.converting.contains(name) { return }
    if Reconcile.isDone(root.latestRecords()[name], folder: folder) {
      // Converted meanwhile by another instance (a shared directory): nothing to do here.
      root.done.insert(name)
      stopTracking(root, folder: folder)
      return
    }
    switch root.tracker.evaluate(folder, now: clock.wallSeconds) {
    case .gone:
      folderGone(root, name: name)
    case .waiting(let reason):
      root.pending[name] = reason
      switch root.tracker.recheck(folder) {
      case .onChange: break
      case .after(let seconds): folderDue[folder] = Due(root: root.path, at: now + .seconds(seconds))
      case .stability: folderDue[folder] = Due(root: root.path, at: now + options.stabilityDelay)
      }
    case .ready:
      let fingerprint = FolderSnapshot.take(folder)?.weightFingerprint ?? ""
      if let hold = root.retries.hold(folder, fingerprint: fingerprint, now: clock.seconds) {
        root.pending[name] = hold
        if let entry = root.retries.entry(for: folder), entry.retryable {
          let left = max(entry.notBefore - clock.seconds, 0)
          folderDue[folder] = Due(root: root.path, at: now + .seconds(left))
        }
      } else {
        enqueue(root, name: name)
      }
    }
  }

  private func enqueue(_ root: WatchedRoot, name: String) {
    let folder = root.folder(name)
    guard running[folder] == nil, !queued.contains(where: { $0.folder == folder }) else { return }
    root.converting.insert(name)
    root.pending[name] = "queued"
    queued.append(Job(rootPath: root.path, name: name, folder: folder, watch: root.config))
  }

  /// Starts queued conversions while fewer than `workers` run, each on its own thread.
  func startQueued() {
    while !stopping && running.count + hooks.count < max(1, config.workers) && !queued.isEmpty {
      var job = queued.removeFirst()
      guard let root = roots[job.rootPath] else { continue }
      switch claimForConversion(job, root: root) {
      case .convert(let claim):
        job.claim = claim
        job.beatAt = claim == nil ? nil : clock.now() + claimBeat
      case .held(let holder):
        root.converting.remove(job.name)
        root.pending[job.name] = Self.heldReason(holder)
        folderDue[job.folder] = Due(root: root.path, at: clock.now() + claimRecheck)
        continue
      case .done:
        logger.info("\(job.folder) was converted by another instance")
        root.converting.remove(job.name)
        root.done.insert(job.name)
        stopTracking(root, folder: job.folder)
        continue
      case .failed(let error):
        logger.error("cannot claim \(job.folder): \(error.description)")
        root.converting.remove(job.name)
        root.pending[job.name] = nil
        root.lastError = error.description
        let fingerprint = FolderSnapshot.take(job.folder)?.weightFingerprint ?? ""
        root.retries.recordFailure(job.folder, fingerprint: fingerprint, error: error, now: clock.seconds)
        folderDue[job.folder] = Due(root: root.path, at: clock.now())
        continue
      }
      job.start = clock.wallTime()
      job.rootHandle = try? DaemonFile.open(job.rootPath, .readOnly, options: .directory, what: "cannot open")
      running[job.folder] = job
      roots[job.rootPath]?.pending[job.name] = nil
      publisher.update {
        $0.active.removeAll { $0.directory == job.rootPath && $0.checkpoint == job.name }
        $0.active.append(ActiveConversion(directory: job.rootPath, checkpoint: job.name, startedAt: job.start))
      }
      logger.info("converting \(job.folder) to \(job.watch.format.rawValue)")
      let converter = options.converter
      let sink = input
      let wallTime = options.wallTime
      let (folder, watch, token) = (job.folder, job.watch, job.token)
      let fence = job.claim.map { ClaimFence($0.claim, clock: options.clock) }
      let gate = ProgressGate()
      let thread = Thread {
        let result = Result {
          try converter.convert(
            folder: folder, watch: watch,
            // Fencing: a conversion whose claim was taken over stops, and asks again right before it commits.
            isCancelled: { token.isCancelled || fence?.isLost() == true },
            stillOwned: { fence?.isCurrent() ?? true },
            progress: { done, total in
              if gate.passes(done: done, total: total) {
                sink.yield(.progress(folder: folder, done: done, total: total))
              }
            })
        }
        sink.yield(.finished(folder: folder, result: result, end: wallTime()))
      }
      thread.name = "ckptd-convert"
      thread.start()
    }
  }

  /// Drops the queued and cancels the running conversions of `root` (it is no longer watched).
  func cancelConversions(of rootPath: String) {
    queued.removeAll { $0.rootPath == rootPath }
    for job in running.values where job.rootPath == rootPath { job.token.cancel() }
  }

  /// A conversion came back: record it in the manifest (only here: one writer per manifest) and update the state.
  func finish(_ job: Job, result: Result<ConversionOutcome, any Error>, end: Date) {
    publisher.update { $0.active.removeAll { $0.directory == job.rootPath && $0.checkpoint == job.name } }
    let root = roots[job.rootPath]
    root?.converting.remove(job.name)
    root?.pending[job.name] = nil
    if case .failure(let error) = result,
      job.token.isCancelled || (error as? CheckpointError)?.code == .cancelled
    {
      // Taken over: another instance judged our claim stale and converts the checkpoint; this one committed
      // nothing, touches nothing of the new holder's (its temporaries included), and looks again later.
      let lost = root != nil && (job.claimLost || job.claim.map({ !$0.claim.isCurrent() }) == true)
      let by = lost ? job.claim?.claim.supersededBy().map { " by \($0.holder)" } ?? "" : ""
      if !lost { removeOwnTemporaries(job) }
      job.claim?.release()
      try? job.rootHandle?.close()
      guard lost, let root else {
        logger.info("abandoned \(job.folder); it is converted again on the next start")
        return
      }
      logger.warning("\(job.folder): claim taken over\(by); stopped without committing")
      if !stopping && root.tracker.isTracking(job.folder) {
        folderDue[job.folder] = Due(root: root.path, at: clock.now() + claimRecheck)
      }
      return
    }
    // A root removed (and maybe re-created) meanwhile: its old manifest went with it, and the new one must
    // not get a record about a folder it never had.
    let sameRoot = job.rootHandle.flatMap { FileIdentity($0) }.map { $0 == FileIdentity(path: job.rootPath) } ?? false
    try? job.rootHandle?.close()
    let records = manifestRecords(job, result: result, end: end)
    recordMetrics(job, records: records.lines, end: end)
    guard let root, sameRoot else {
      logger.notice("\(job.rootPath) was removed during the conversion of \(job.name); nothing recorded")
      job.claim?.release()
      if let root { folderGone(root, name: job.name) }
      return
    }
    // The claim goes once the record is durable: another instance that then takes it reads the record.
    record(records.lines, in: root, releasing: job.claim)
    switch result {
    case .success(let outcome):
      if outcome.skippedReason == nil && !job.watch.execAfter.isEmpty { startHook(job, outcome: outcome) }
      root.done.insert(job.name)
      root.retries.clear(job.folder)
      stopTracking(root, folder: job.folder)
      root.lastError = nil
    case .failure where records.vanished:
      folderGone(root, name: job.name)
    case .failure(let error):
      let fingerprint = FolderSnapshot.take(job.folder)?.weightFingerprint ?? ""
      root.retries.recordFailure(job.folder, fingerprint: fingerprint, error: error, now: clock.seconds)
      root.lastError = (error as? CheckpointError)?.description ?? "\(error)"
      // Re-evaluated now: the retry book says until when it waits.
      folderDue[job.folder] = Due(root: root.path, at: clock.now())
    }
  }

  /// The manifest line(s) for a finished conversion, and whether the folder vanished.
  private func manifestRecords(
    _ job: Job, result: Result<ConversionOutcome, any Error>, end: Date
  ) -> (lines: [ManifestRecord], vanished: Bool) {
    let node = config.nodeName
    func base(_ event: ManifestEvent) -> ManifestRecord {
      var record = ManifestRecord(
        checkpoint: job.name, event: event, format: job.watch.format.rawValue, dtype: job.watch.dtype.rawValue,
        start: job.start, end: end)
      record.node = node
      return record
    }
    switch result {
    case .success(let outcome):
      var line = base(outcome.skippedReason == nil ? .converted : .skipped)
      line.sources = outcome.sources
      line.outputs = outcome.outputs
      line.tensors = outcome.tensors
      line.verified = outcome.verified
      line.note = outcome.skippedReason
      line.sourceKind = outcome.sourceKind
      var lines = [line]
      if outcome.removedSource {
        var removed = base(.removedSource)
        removed.sources = outcome.sources
        removed.outputs = outcome.outputs
        lines.append(removed)
      }
      logger.info(
        "\(line.event.rawValue) \(job.folder): \(outcome.outputs.map(\.name)) in \(Int(end.timeIntervalSince(job.start) * 1000)) ms"
      )
      return (lines, false)
    case .failure(let error):
      let text = (error as? CheckpointError)?.description ?? "\(error)"
      if Self.isVanished(error, folder: job.folder) {
        removeOwnTemporaries(job)
        var line = base(.vanished)
        line.error = text
        logger.notice("\(job.folder) vanished during its conversion (rotation?): \(text)")
        return ([line], true)
      }
      var line = base(.failed)
      line.error = text
      line.retryable = RetryBook.isRetryable(error)
      logger.error("conversion failed: \(text)")
      return ([line], false)
    }
  }

  /// The conversion failed because its folder went away (a `.vanished` error, or whatever error when the
  /// folder is gone now).
  static func isVanished(_ error: any Error, folder: String) -> Bool {
    if let error = error as? CheckpointError, error.code == .vanished { return true }
    return !isDirectory(folder)
  }
}
