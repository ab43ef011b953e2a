extension StatusSnapshot {
  /// One line for systemd's `STATUS=` (shown by `systemctl status`): directories, totals, what is under way.
  public var summaryLine: String {
    let watching = directories.filter { $0.state == .watching }.count
    var parts = ["\(state.rawValue)", "watching \(watching)/\(directories.count) dirs"]
    let converted = directories.reduce(0) { $0 + ($1.counts["converted"] ?? 0) }
    let failed = directories.reduce(0) { $0 + ($1.counts["failed"] ?? 0) }
    parts.append("\(converted) converted")
    if failed > 0 { parts.append("\(failed) failed") }
    let pending = directories.reduce(0) { $0 + $1.pending.count }
    if pending > 0 { parts.append("\(pending) pending") }
    if let first = active.first {
      var text = "converting \(first.checkpoint)"
      if first.bytesTotal > 0 { text += " \(Int(Double(first.bytesDone) / Double(first.bytesTotal) * 100))%" }
      if active.count > 1 { text += " (+\(active.count - 1) more)" }
      parts.append(text)
    }
    if !problems.isEmpty { parts.append("\(problems.count) drop-in problem(s)") }
    return parts.joined(separator: ", ")
  }
}
