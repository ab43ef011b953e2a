import CheckpointFormats
import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// An `exec_after` command running for one converted checkpoint.
struct HookJob: Sendable {
  var rootPath: String
  var name: String
  var folder: String
  var start: Date
  var task: Task<Void, Never>
}

extension Daemon {
  /// Runs the drop-in's `exec_after` for a converted checkpoint, off the actor; it reports back as an event.
  func startHook(_ job: Job, outcome: ConversionOutcome) {
    let watch = job.watch
    let request = ExecRequest(
      argv: watch.execAfter, directory: job.folder,
      environment: [
        "CKPTD_CHECKPOINT": job.folder,
        "CKPTD_FORMAT": watch.format.rawValue,
        "CKPTD_OUTPUTS": outcome.outputs.map(\.name).joined(separator: "\n"),
        "CKPTD_MANIFEST": watch.manifestPath,
        "CKPTD_NODE": config.nodeName,
      ],
      timeout: .nanoseconds(Int64((watch.execTimeoutSeconds * 1e9).rounded())))
    let runner = ExecAfterRunner(clock: options.clock, killGrace: options.execKillGrace)
    let sink = input
    let logger = self.logger
    let (folder, name, wallTime) = (job.folder, job.name, options.wallTime)
    logger.info("exec_after \(name): \(watch.execAfter.joined(separator: " "))")
    let task = Task.detached {
      let result = await runner.run(request) { line in
        switch line {
        case .stdout(let text): logger.info("exec_after \(name): \(text)")
        case .stderr(let text): logger.notice("exec_after \(name) (stderr): \(text)")
        }
      }
      sink.yield(.hookFinished(folder: folder, outcome: result, end: wallTime()))
    }
    hooks[folder] = HookJob(rootPath: job.rootPath, name: job.name, folder: folder, start: clock.wallTime(), task: task)
  }

  /// A command ended: its `exec` record goes into the manifest (a failure never blocks the next conversion).
  func hookFinished(_ hook: HookJob, outcome: ExecOutcome, end: Date) {
    metrics.execFinished(result: outcome.result)
    metricsDirty = true
    var record = ManifestRecord(
      checkpoint: hook.name, event: .exec, format: "", dtype: "", start: hook.start, end: end,
      seconds: outcome.seconds)
    switch outcome.termination {
    case .exited(let status): record.exitStatus = status
    case .signaled(let signal): record.signal = signal
    case .notStarted(let reason): record.error = reason
    }
    record.stderrTail = outcome.stderrTail.isEmpty ? nil : outcome.stderrTail
    record.node = config.nodeName
    record.note = outcome.timedOut ? "timed out" : nil
    if outcome.succeeded {
      logger.info("exec_after \(hook.name): \(outcome.summary) in \(Int(outcome.seconds * 1000)) ms")
    } else {
      logger.error("exec_after \(hook.name) failed: \(outcome.summary)")
    }
    guard let root = roots[hook.rootPath] else { return }
    record.format = root.config.format.rawValue
    record.dtype = root.config.dtype.rawValue
    self.record([record], in: root, releasing: nil)
  }
}
