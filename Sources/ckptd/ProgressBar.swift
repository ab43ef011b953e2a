import CheckpointDaemon
import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

/// Progress on standard error: a redrawn bar (bytes, rate, time left) on a terminal, a plain line every
/// 10 % otherwise. Used from the one thread that runs a conversion.
final class ProgressBar: @unchecked Sendable {
  private let isTerminal = isatty(2) == 1
  private var label = ""
  private var started = 0.0
  private var lastDraw = 0.0
  private var lastStep = -1
  private var drawn = false

  /// Starts a new bar for `label` (a checkpoint folder or file).
  func begin(_ label: String) {
    self.label = label
    started = ProgressBar.now()
    lastDraw = 0
    lastStep = -1
    drawn = false
  }

  /// Shows `done` of `total` bytes.
  func update(done: Int64, total: Int64) {
    guard total > 0 else { return }
    let fraction = Swift.min(1, Double(done) / Double(total))
    let now = ProgressBar.now()
    let elapsed = now - started
    if isTerminal {
      guard now - lastDraw >= 0.1 || done >= total else { return }
      lastDraw = now
      let width = 24
      let filled = Int(fraction * Double(width))
      let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
      let rate = elapsed > 0 ? Double(done) / elapsed : 0
      let left = rate > 0 ? Double(total - done) / rate : 0
      let line =
        "\r\(label) [\(bar)] \(Int(fraction * 100))% \(StatusRenderer.bytes(done))/\(StatusRenderer.bytes(total)) "
        + "\(StatusRenderer.bytes(Int64(rate)))/s ETA \(ProgressBar.duration(left))\u{1B}[K"
      ProgressBar.writeStandardError(line)
      drawn = true
    } else {
      let step = Int(fraction * 10)
      guard step > lastStep else { return }
      lastStep = step
      ProgressBar.writeStandardError(
        "\(label): \(step * 10)% (\(StatusRenderer.bytes(done)) of \(StatusRenderer.bytes(total)))\n")
    }
  }

  /// Clears the bar (terminal) so that the summary line starts on a clean line.
  func finish() {
    if isTerminal && drawn {
      ProgressBar.writeStandardError("\r\u{1B}[K")
    }
    drawn = false
  }

  static func now() -> Double {
    var value = timespec()
    clock_gettime(CLOCK_MONOTONIC, &value)
    return Double(value.tv_sec) + Double(value.tv_nsec) / 1e9
  }

  /// `m:ss` or `h:mm:ss`.
  static func duration(_ seconds: Double) -> String {
    let total = Int(seconds.rounded())
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60)
    let two = { (value: Int) in value < 10 ? "0\(value)" : "\(value)" }
    return h > 0 ? "\(h):\(two(m)):\(two(s))" : "\(m):\(two(s))"
  }

  static func writeStandardError(_ text: String) {
    _ = text.withCString { pointer in write(2, pointer, strlen(pointer)) }
  }
}
