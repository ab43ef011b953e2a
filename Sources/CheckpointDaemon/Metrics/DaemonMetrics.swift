import CheckpointFormats
import CoreMetrics
import Foundation
import Prometheus

/// The daemon's metrics: recorded through swift-metrics, rendered in the Prometheus text format by
/// swift-prometheus, and written to `metrics_file` for node_exporter's textfile collector.
///
/// Every method is safe to call from any thread (the registry locks internally).
public struct DaemonMetrics: Sendable {
  /// The registry the text is rendered from.
  public let registry: PrometheusCollectorRegistry
  private let factory: DocumentedPrometheusFactory

  public init() {
    registry = PrometheusCollectorRegistry()
    factory = DocumentedPrometheusFactory(registry: registry)
    // Series that exist from the start, so a scrape of an idle daemon already shows them at 0.
    for name in [MetricCatalog.overflows, MetricCatalog.rescans, MetricCatalog.polls] {
      CoreMetrics.Counter(label: name, factory: factory).increment(by: 0)
    }
    for name in [MetricCatalog.running, MetricCatalog.watches] {
      Gauge(label: name, factory: factory).record(0)
    }
  }

  /// A conversion ended (`outcome` is the manifest event: converted, skipped, failed, vanished).
  public func conversionFinished(
    directory: String, outcome: String, seconds: Double, bytesRead: Int64, bytesWritten: Int64
  ) {
    let where_ = [("directory", directory)]
    CoreMetrics.Counter(label: MetricCatalog.conversions, dimensions: where_ + [("outcome", outcome)], factory: factory)
      .increment()
    CoreMetrics.Counter(label: MetricCatalog.readBytes, dimensions: where_, factory: factory)
      .increment(by: max(0, bytesRead))
    CoreMetrics.Counter(label: MetricCatalog.writtenBytes, dimensions: where_, factory: factory)
      .increment(by: max(0, bytesWritten))
    CoreMetrics.Timer(label: MetricCatalog.conversionSeconds, dimensions: where_, factory: factory)
      .recordNanoseconds(Int64((max(0, seconds) * 1e9).rounded()))
  }

  /// Checkpoints waiting in one directory.
  public func setPending(directory: String, count: Int) {
    Gauge(label: MetricCatalog.pending, dimensions: [("directory", directory)], factory: factory).record(count)
  }

  /// Conversions running now.
  public func setRunning(_ count: Int) { Gauge(label: MetricCatalog.running, factory: factory).record(count) }

  /// inotify watches held now.
  public func setWatches(_ count: Int) { Gauge(label: MetricCatalog.watches, factory: factory).record(count) }

  /// The inotify queue overflowed.
  public func overflowed() { CoreMetrics.Counter(label: MetricCatalog.overflows, factory: factory).increment() }

  /// A full rescan ran.
  public func rescanned() { CoreMetrics.Counter(label: MetricCatalog.rescans, factory: factory).increment() }

  /// A poll of a directory on a remote file system ran.
  public func polled() { CoreMetrics.Counter(label: MetricCatalog.polls, factory: factory).increment() }

  /// An `exec_after` command finished with `result` (ok, failed, timeout, error).
  public func execFinished(result: String) {
    CoreMetrics.Counter(label: MetricCatalog.execRuns, dimensions: [("result", result)], factory: factory)
      .increment()
  }

  /// The Prometheus text exposition of every metric.
  public func render() -> String { registry.emitToString() }

  /// Replaces `path` atomically (temporary file in the same folder, fsync, rename) with the rendered text.
  public func write(to path: String) throws {
    try DaemonFile.replace(path, with: Array(render().utf8), what: "the metrics file")
  }
}
