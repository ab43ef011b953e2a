import CheckpointDaemon
import CheckpointFormats
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// What `ckptd convert` reports progress to: one `begin`, any number of `update`s, then one `finish` per path.
protocol ProgressReporting: Sendable {
  /// Starts reporting on `label` (a checkpoint folder or file).
  func begin(_ label: String)
  /// Shows `done` of `total` bytes.
  func update(done: Int64, total: Int64)
  /// Ends the report on the current label.
  func finish()
}

/// Progress on standard error: a redrawn bar (bytes, rate, time left) on a terminal, a plain line every
/// 10 % otherwise. Updates come from the thread that runs a conversion; the state sits behind a mutex.
final class ProgressBar: ProgressReporting {
  private struct State {
    var label = ""
    var started = 0.0
    var lastDraw = 0.0
    var lastStep = -1
    var drawn = false
  }

  private let isTerminal: Bool
  private let write: @Sendable (String) -> Void
  private let state = Mutexed(State())

  /// A bar on standard error (`isTerminal` decides between the redrawn bar and plain lines).
  init(isTerminal: Bool = isatty(2) == 1, write: @escaping @Sendable (String) -> Void = ProgressBar.writeStandardError)
  {
    self.isTerminal = isTerminal
    self.write = write
  }

  func begin(_ label: String) {
    let now = ProgressBar.now()
    state.withLock { $0 = State(label: label, started: now) }
  }

  func update(done: Int64, total: Int64) {
    guard total > 0 else { return }
    let fraction = Swift.min(1, Double(done) / Double(total))
    let now = ProgressBar.now()
    let isTerminal = isTerminal
    let line: String? = state.withLock { state in
      if isTerminal {
        guard now - state.lastDraw >= 0.1 || done >= total else { return nil }
        state.lastDraw = now
        state.drawn = true
        let elapsed = now - state.started
        let width = 24
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let left = rate > 0 ? Double(total - done) / rate : 0
        return "\r\(state.label) [\(bar)] \(Int(fraction * 100))% "
          + "\(StatusRenderer.bytes(done))/\(StatusRenderer.bytes(total)) "
          + "\(StatusRenderer.bytes(Int64(rate)))/s ETA \(ProgressBar.duration(left))\u{1B}[K"
      }
      let step = Int(fraction * 10)
      guard step > state.lastStep else { return nil }
      state.lastStep = step
      return "\(state.label): \(step * 10)% (\(StatusRenderer.bytes(done)) of \(StatusRenderer.bytes(total)))\n"
    }
    if let line { write(line) }
  }

  /// Clears the bar (terminal) so that the summary line starts on a clean line.
  func finish() {
    let wasDrawn = state.withLock { state in
      defer { state.drawn = false }
      return state.drawn
    }
    if isTerminal && wasDrawn { write("\r\u{1B}[K") }
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

  @Sendable static func writeStandardError(_ text: String) {
    _ = text.withCString { pointer in Glibc.write(2, pointer, strlen(pointer)) }
  }
}
