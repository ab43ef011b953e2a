import CheckpointFormats
import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

extension Daemon {
  /// Re-evaluates every tracked folder; queues the ready ones.
  func evaluatePending() {
    let now = Date().timeIntervalSince1970
    for root in roots.values where root.present {
      for folder in root.tracker.folders {
        let name = (folder as NSString).lastPathComponent
        if root.converting.contains(name) { continue }
        switch root.tracker.evaluate(folder, now: now) {
        case .gone:
          folderGone(root, name: name)
        case .waiting(let reason):
          root.pending[name] = reason
        case .ready:
          let fingerprint = FolderSnapshot.take(folder)?.weightFingerprint ?? ""
          if let hold = root.retries.hold(folder, fingerprint: fingerprint, now: now) {
            root.pending[name] = hold
          } else {
            startConversion(root, name: name)
          }
        }
      }
    }
  }

  private func startConversion(_ root: WatchedRoot, name: String) {
    let folder = root.folder(name)
    let watch = root.config
    let converter = options.converter
    let publisher = self.publisher
    let logger = self.logger
    let rootPath = root.path
    root.converting.insert(name)
    root.pending[name] = "queued"
    let accepted = queue.enqueue(folder) { [self] token in
      let start = Date()
      publisher.update {
        $0.active.removeAll { $0.directory == rootPath && $0.checkpoint == name }
        $0.active.append(ActiveConversion(directory: rootPath, checkpoint: name, startedAt: start))
      }
      logger.info("converting \(folder) to \(watch.format.rawValue)")
      let result = Result {
        try converter.convert(
          folder: folder, watch: watch, isCancelled: { token.isCancelled },
          progress: { done, total in
            publisher.update { status in
              if let index = status.active.firstIndex(where: {
                $0.directory == rootPath && $0.checkpoint == name
              }) {
                status.active[index].bytesDone = done
                status.active[index].bytesTotal = total
              }
            }
          })
      }
      let end = Date()
      publisher.update { $0.active.removeAll { $0.directory == rootPath && $0.checkpoint == name } }
      let event = record(
        result, watch: watch, folder: folder, name: name, start: start, end: end, token: token)
      loop.async { [self] in finish(rootPath: rootPath, name: name, result: result, event: event) }
    }
    if !accepted { root.converting.remove(name) }
  }

  /// Writes the manifest line(s) on the worker thread, so that a stop right after cannot lose them.
  /// Returns the event recorded, nil when the conversion was cancelled (redone on the next start).
  private func record(
    _ result: Result<ConversionOutcome, any Error>, watch: WatchConfig, folder: String,
    name: String, start: Date,
    end: Date, token: CancelToken
  ) -> ManifestEvent? {
    let manifest = Manifest(path: watch.manifestPath)
    func base(_ event: ManifestEvent) -> ManifestRecord {
      ManifestRecord(
        checkpoint: name, event: event, format: watch.format.rawValue, dtype: watch.dtype.rawValue,
        start: start,
        end: end)
    }
    var records: [ManifestRecord] = []
    var event: ManifestEvent?
    switch result {
    case .success(let outcome):
      var line = base(outcome.skippedReason == nil ? .converted : .skipped)
      line.sources = outcome.sources
      line.outputs = outcome.outputs
      line.tensors = outcome.tensors
      line.verified = outcome.verified
      line.note = outcome.skippedReason
      records.append(line)
      if outcome.removedSource {
        var removed = base(.removedSource)
        removed.sources = outcome.sources
        removed.outputs = outcome.outputs
        records.append(removed)
      }
      event = line.event
      logger.info(
        "\(line.event.rawValue) \(folder): \(outcome.outputs.map(\.name)) in \(Int(end.timeIntervalSince(start) * 1000)) ms"
      )
    case .failure(let error):
      if token.isCancelled || (error as? CheckpointError)?.code.name == "cancelled" {
        Reconcile.removeStaleTemporaries(in: folder)
        logger.info("abandoned \(folder); it is converted again on the next start")
        return nil
      }
      let text = (error as? CheckpointError)?.description ?? "\(error)"
      if Self.isVanished(error, folder: folder) {
        Reconcile.removeStaleTemporaries(in: folder)
        var line = base(.vanished)
        line.error = text
        records.append(line)
        event = .vanished
        logger.notice("\(folder) vanished during its conversion (rotation?): \(text)")
      } else {
        var line = base(.failed)
        line.error = text
        line.retryable = RetryBook.isRetryable(error)
        records.append(line)
        event = .failed
        logger.error("conversion failed: \(text)")
      }
    }
    // A vanished folder's directory may be gone with it: its manifest is in the root, which stays.
    for line in records {
      do {
        try manifest.append(line)
      } catch {
        logger.error("cannot append to \(manifest.path): \(error)")
      }
    }
    return event
  }

  /// Back on the loop: updates the in-memory state after a conversion.
  private func finish(
    rootPath: String, name: String, result: Result<ConversionOutcome, any Error>,
    event: ManifestEvent?
  ) {
    guard let root = roots[rootPath] else { return }
    root.converting.remove(name)
    root.pending[name] = nil
    let folder = root.folder(name)
    if let event { root.counts[event.rawValue, default: 0] += 1 }
    if event == .removedSource || (try? result.get())?.removedSource == true {
      root.counts[ManifestEvent.removedSource.rawValue, default: 0] += 1
    }
    switch (result, event) {
    case (.success, _):
      root.done.insert(name)
      root.retries.clear(folder)
      stopTracking(root, folder: folder)
      root.lastError = nil
    case (.failure, .some(.vanished)):
      folderGone(root, name: name)
    case (.failure(let error), .some):
      let fingerprint = FolderSnapshot.take(folder)?.weightFingerprint ?? ""
      root.retries.recordFailure(
        folder, fingerprint: fingerprint, error: error, now: Date().timeIntervalSince1970)
      root.lastError = (error as? CheckpointError)?.description ?? "\(error)"
    case (.failure, .none):
      break
    }
    publishStatus()
  }

  static func isVanished(_ error: any Error, folder: String) -> Bool {
    if let error = error as? CheckpointError {
      if error.code == .vanished { return true }
      if error.errno == ENOENT && !isDirectory(folder) { return true }
    }
    return !isDirectory(folder)
  }
}
