/// Every metric ckptd exports: its Prometheus name, type and help text, in one place.
///
/// Names follow Prometheus conventions: the `ckptd_` prefix, `_total` for counters, base units
/// (`_seconds`, `_bytes`).
public enum MetricCatalog {
  public static let conversions = "ckptd_conversions_total"
  public static let readBytes = "ckptd_read_bytes_total"
  public static let writtenBytes = "ckptd_written_bytes_total"
  public static let conversionSeconds = "ckptd_conversion_seconds"
  public static let pending = "ckptd_checkpoints_pending"
  public static let running = "ckptd_conversions_running"
  public static let watches = "ckptd_inotify_watches"
  public static let overflows = "ckptd_inotify_overflows_total"
  public static let rescans = "ckptd_rescans_total"
  public static let polls = "ckptd_polls_total"
  public static let execRuns = "ckptd_exec_runs_total"

  /// Help text per metric name, emitted as `# HELP` lines (promtool's linter requires them).
  public static let help: [String: String] = [
    conversions: "Checkpoint conversions finished, by watched directory and outcome.",
    readBytes: "Bytes of source weights read by conversions, by watched directory.",
    writtenBytes: "Bytes of converted weights written, by watched directory.",
    conversionSeconds: "Wall time of one checkpoint conversion, by watched directory.",
    pending: "Checkpoints seen but not yet converted, by watched directory.",
    running: "Conversions running now.",
    watches: "inotify watches held.",
    overflows: "inotify queue overflows (each one triggers a rescan).",
    rescans: "Full rescans of watched directories.",
    polls: "Polls of watched directories on file systems inotify cannot see.",
    execRuns: "exec_after commands finished, by result (ok, failed, timeout, error).",
  ]

  /// Histogram buckets for conversion seconds: from a tiny adapter to a 20 GiB checkpoint.
  public static let secondsBuckets: [Duration] = [
    .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30),
    .seconds(60), .seconds(120), .seconds(300), .seconds(600), .seconds(1800), .seconds(3600),
  ]
}
