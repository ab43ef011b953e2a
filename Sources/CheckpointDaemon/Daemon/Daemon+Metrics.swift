import CheckpointFormats
import Foundation
import Logging

extension Daemon {
  /// Counts a finished conversion's records (a `removed_source` line is part of its `converted` one).
  func recordMetrics(_ job: Job, records: [ManifestRecord], end: Date) {
    for record in records where record.event != .removedSource {
      metrics.conversionFinished(
        directory: job.rootPath, outcome: record.event.rawValue, seconds: max(0, end.timeIntervalSince(job.start)),
        bytesRead: record.sources.reduce(0) { $0 + $1.bytes },
        bytesWritten: record.outputs.reduce(0) { $0 + $1.bytes })
    }
    metricsDirty = true
  }

  /// When the metrics file is written next, if anything is waiting to be written.
  var metricsDeadline: Duration? {
    guard !config.metricsFile.isEmpty, metricsDirty else { return nil }
    return metricsNextWrite
  }

  /// Brings the gauges up to date and writes the file when a second has passed since the last write.
  func publishMetrics() {
    guard !config.metricsFile.isEmpty else { return }
    let figures = watcher.figures
    if figures.overflows > metricsCounted.overflows || rescans > metricsCounted.rescans {
      for _ in metricsCounted.overflows..<max(figures.overflows, metricsCounted.overflows) { metrics.overflowed() }
      for _ in metricsCounted.rescans..<max(rescans, metricsCounted.rescans) { metrics.rescanned() }
      metricsCounted = (max(figures.overflows, metricsCounted.overflows), max(rescans, metricsCounted.rescans))
      metricsDirty = true
    }
    for root in roots.values { metrics.setPending(directory: root.path, count: root.pending.count) }
    metrics.setRunning(running.count)
    metrics.setWatches(registry.count)
    guard metricsDirty, metricsNextWrite <= clock.now() else { return }
    writeMetrics()
  }

  /// Writes the metrics file now.
  func writeMetrics() {
    guard !config.metricsFile.isEmpty, metricsDirty else { return }
    metricsDirty = false
    metricsNextWrite = clock.now() + .seconds(1)
    do {
      try metrics.write(to: config.metricsFile)
    } catch {
      logger.error("cannot write the metrics file: \((error as? CheckpointError)?.description ?? "\(error)")")
    }
  }
}
