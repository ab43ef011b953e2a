import CheckpointConversion
import CheckpointFormats
import Foundation

/// `ckptd config check` output: effective settings per watched directory, masked files, and problems.
public enum ConfigReport {
  /// The report, ending in a newline. Problems are listed too (the command also prints them to stderr).
  ///
  /// `detect` names each directory's file system and watch mode (statfs and /proc/self/mountinfo by default).
  /// `running`: the status document of the daemon running with this config, if any: its last poll of each
  /// directory is shown.
  public static func render(
    _ config: DaemonConfig,
    detect: (WatchConfig) -> FileSystemReport = { FileSystemDetection.detect(path: $0.path, setting: $0.watch) },
    running: StatusSnapshot? = nil
  ) -> String {
    var out: [String] = []
    out.append("config file:  \(config.configFile)")
    out.append("status_file:  \(config.statusFile)")
    out.append("workers:      \(config.workers)")
    out.append("log_level:    \(config.logLevel)")
    out.append("dropin_dirs:  \(config.dropinDirs.joined(separator: ", "))")
    out.append("metrics_file: \(config.metricsFile.isEmpty ? "\"\" (off)" : config.metricsFile)")
    out.append("node_name:    \(config.nodeName)")
    out.append("claim_ttl_seconds: \(formatSeconds(config.claimTTLSeconds))")
    out.append("")
    if config.watches.isEmpty {
      out.append("No watched directories.")
    }
    for watch in config.watches {
      out.append("\(watch.path)  (from \(watch.sourceFile))")
      out.append("  format = \(watch.format.rawValue)")
      out.append("  dtype = \(watch.dtype.rawValue)")
      out.append("  pattern = \(watch.pattern)")
      out.append("  ready_marker = \(watch.readyMarker.isEmpty ? "\"\" (quiet period only)" : watch.readyMarker)")
      out.append("  settle_seconds = \(formatSeconds(watch.settleSeconds))")
      out.append("  keep_source = \(watch.keepSource)")
      out.append("  verify = \(watch.verify)")
      out.append("  manifest = \(watch.manifestPath)")
      if !watch.execAfter.isEmpty {
        out.append("  exec_after = \(watch.execAfter.map { "\"\($0)\"" }.joined(separator: " "))")
        out.append("  exec_timeout_seconds = \(formatSeconds(watch.execTimeoutSeconds))")
      }
      out.append(
        "  max_shard_size = "
          + (watch.maxShardBytes.map { "\(watch.maxShardSize) (\($0) bytes)" } ?? "\"\" (keep the source's sharding)"))
      out.append("  watch = \(watch.watch.rawValue)")
      out.append("  poll_seconds = \(formatSeconds(watch.pollSeconds))")
      let fs = detect(watch)
      let mode = fs.mode == .poll ? "poll (inotify + every \(formatSeconds(watch.pollSeconds)) s)" : "inotify"
      out.append("  file system: \(fs.type) (f_type \(fs.magicHex)\(fs.mountPoint.map { ", mounted at \($0)" } ?? ""))")
      out.append("  watch mode: \(mode): \(fs.reason)")
      if fs.mode == .poll {
        if let running, let poll = running.directories.first(where: { $0.path == watch.path })?.lastPoll {
          let took = String(format: "%.1f ms", poll.seconds * 1000)
          out.append("  last poll: \(ISOTime.string(poll.at)), took \(took) (daemon pid \(running.pid))")
        } else {
          out.append("  last poll: none (\(running == nil ? "no daemon running" : "not polled yet"))")
        }
      }
      out.append("  consolidate = \(watch.consolidate.rawValue)")
    }
    if !config.masked.isEmpty {
      out.append("")
      out.append("Masked drop-ins (not applied):")
      for item in config.masked {
        if item.file == item.maskedBy {
          out.append("  \(item.file)  (mask: empty or /dev/null)")
        } else {
          out.append("  \(item.file)  (overridden by \(item.maskedBy))")
        }
      }
    }
    if !config.problems.isEmpty {
      out.append("")
      out.append("Broken drop-ins (skipped):")
      for problem in config.problems { out.append("  \(problem.description)") }
    }
    return out.joined(separator: "\n") + "\n"
  }

  static func formatSeconds(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
  }
}
