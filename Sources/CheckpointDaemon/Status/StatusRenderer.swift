import Foundation

/// `ckptd status` as a person reads it: the daemon, each directory with its counts, what waits and why, and the
/// conversions under way with percent and rate.
public enum StatusRenderer {
  /// The table, ending in a newline.
  public static func render(_ snapshot: StatusSnapshot, now: Date = Date()) -> String {
    var out: [String] = []
    let uptime = duration(now.timeIntervalSince(snapshot.startedAt))
    let age = duration(max(0, now.timeIntervalSince(snapshot.updatedAt)))
    out.append(
      "ckptd \(snapshot.version)  pid \(snapshot.pid)  \(snapshot.state.rawValue)  up \(uptime)  "
        + "(updated \(age) ago)")
    let figures = snapshot.inotify
    out.append("inotify: \(figures.watches) watches, \(figures.overflows) overflows, \(figures.rescans) rescans")
    out.append("")
    if snapshot.directories.isEmpty {
      out.append("No watched directories (add a drop-in to watch.d; see `ckptd config check`).")
    } else {
      out.append(contentsOf: directoryTable(snapshot.directories))
      let watched = snapshot.directories.filter { $0.fileSystem != nil }
      if !watched.isEmpty {
        out.append("")
        out.append("Watching:")
        for dir in watched { out.append("  " + watchLine(dir, now: now)) }
      }
    }
    let pending = snapshot.directories.flatMap { dir in dir.pending.map { (dir.path, $0) } }
    if !pending.isEmpty {
      out.append("")
      out.append("Pending:")
      for (dir, item) in pending { out.append("  \(join(dir, item.name))  \(item.reason)") }
    }
    if !snapshot.active.isEmpty {
      out.append("")
      out.append("Converting:")
      for item in snapshot.active { out.append("  " + activeLine(item, now: now)) }
    }
    let errors = snapshot.directories.compactMap { dir in dir.lastError.map { (dir.path, $0) } }
    if !errors.isEmpty {
      out.append("")
      out.append("Last errors:")
      for (dir, error) in errors { out.append("  \(dir): \(error)") }
    }
    if !snapshot.problems.isEmpty {
      out.append("")
      out.append("Drop-in problems (skipped):")
      for problem in snapshot.problems { out.append("  \(problem.description)") }
    }
    return out.joined(separator: "\n") + "\n"
  }

  static let countColumns = ["converted", "failed", "skipped", "vanished"]

  static func directoryTable(_ directories: [DirectoryStatus]) -> [String] {
    let header = ["DIRECTORY", "FORMAT", "DTYPE", "STATE"] + countColumns.map { $0.uppercased() } + ["PENDING"]
    var rows = [header]
    for dir in directories {
      var row = [dir.path, dir.format, dir.dtype, dir.state.rawValue]
      row += countColumns.map { String(dir.counts[$0] ?? 0) }
      row.append(String(dir.pending.count))
      rows.append(row)
    }
    var widths = Array(repeating: 0, count: header.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    return rows.map { row in
      row.enumerated().map { i, cell in
        let pad = String(repeating: " ", count: widths[i] - cell.count)
        // text columns left-aligned, numbers right-aligned
        return i < 4 ? cell + pad : pad + cell
      }.joined(separator: "  ").trimmingTrailingSpaces()
    }
  }

  static func activeLine(_ item: ActiveConversion, now: Date) -> String {
    let elapsed = max(0, now.timeIntervalSince(item.startedAt))
    var line = join(item.directory, item.checkpoint)
    if item.bytesTotal > 0 {
      let percent = Double(item.bytesDone) / Double(item.bytesTotal) * 100
      line += "  " + String(format: "%.0f%%", min(100, max(0, percent)))
      line += "  \(bytes(item.bytesDone)) of \(bytes(item.bytesTotal))"
    } else {
      line += "  \(bytes(item.bytesDone))"
    }
    if elapsed >= 0.5 {
      line += "  \(bytes(Int64(Double(item.bytesDone) / elapsed)))/s"
    }
    line += "  for \(duration(elapsed))"
    return line
  }

  /// `/data/run  fuse.sshfs, poll every 10 s (fuse.sshfs is a FUSE file system...); last poll 3s ago, 2.1 ms`.
  static func watchLine(_ dir: DirectoryStatus, now: Date) -> String {
    guard let fs = dir.fileSystem else { return dir.path }
    var line = "\(dir.path)  \(fs.type), "
    if fs.mode == WatchMode.poll.rawValue, let every = fs.pollSeconds {
      line += "inotify + poll every \(seconds(every))"
    } else {
      line += "inotify"
    }
    line += " (\(fs.reason))"
    if let poll = dir.lastPoll {
      line += "; last poll \(duration(max(0, now.timeIntervalSince(poll.at)))) ago, "
      line += String(format: "%.1f ms", poll.seconds * 1000)
    }
    return line
  }

  /// `10 s`, `0.2 s`.
  static func seconds(_ value: Double) -> String {
    value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
  }

  static func join(_ dir: String, _ name: String) -> String {
    dir.hasSuffix("/") ? dir + name : dir + "/" + name
  }

  /// `512 B`, `1.5 KiB`, `3.2 GiB`.
  public static func bytes(_ count: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(count)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
      value /= 1024
      unit += 1
    }
    return unit == 0 ? "\(count) B" : String(format: "%.1f", value) + " " + units[unit]
  }

  /// `42s`, `5m 03s`, `2h 07m`, `3d 04h`.
  public static func duration(_ seconds: Double) -> String {
    let total = Int(max(0, seconds).rounded(.down))
    let (days, hours, minutes, secs) = (total / 86_400, total / 3600 % 24, total / 60 % 60, total % 60)
    if days > 0 { return "\(days)d \(pad2(hours))h" }
    if hours > 0 { return "\(hours)h \(pad2(minutes))m" }
    if minutes > 0 { return "\(minutes)m \(pad2(secs))s" }
    return "\(secs)s"
  }

  private static func pad2(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
}

extension String {
  fileprivate func trimmingTrailingSpaces() -> String {
    var copy = self
    while copy.last == " " { copy.removeLast() }
    return copy
  }
}
