/// What one `exec_after` command did.
public struct ExecOutcome: Sendable, Equatable {
  /// How the command ended.
  public enum Termination: Sendable, Equatable {
    /// It exited with this status.
    case exited(Int32)
    /// A signal ended it (SIGTERM or SIGKILL after its timeout, or a signal from elsewhere).
    case signaled(Int32)
    /// It could not be started (missing or non-executable file, bad working directory).
    case notStarted(String)
  }

  /// How the command ended.
  public var termination: Termination
  /// Wall seconds from start to the end of its process group.
  public var seconds: Double
  /// The last lines it wrote to standard error (at most `ExecAfterRunner.tailLines`).
  public var stderrTail: [String]
  /// The timeout expired and the process group was sent SIGTERM.
  public var timedOut: Bool

  public init(termination: Termination, seconds: Double, stderrTail: [String] = [], timedOut: Bool = false) {
    self.termination = termination
    self.seconds = seconds
    self.stderrTail = stderrTail
    self.timedOut = timedOut
  }

  /// Exit status 0 within the timeout.
  public var succeeded: Bool { termination == .exited(0) && !timedOut }

  /// `ok`, `failed`, `timeout` or `error`: the result label for metrics and logs.
  public var result: String {
    if timedOut { return "timeout" }
    switch termination {
    case .exited(0): return "ok"
    case .exited, .signaled: return "failed"
    case .notStarted: return "error"
    }
  }

  /// One line for the log and the manifest: `exit status 3`, `killed by signal 15 after the timeout`...
  public var summary: String {
    let tail = timedOut ? " after the timeout" : ""
    switch termination {
    case .exited(let status): return "exit status \(status)\(tail)"
    case .signaled(let signal): return "killed by signal \(signal)\(tail)"
    case .notStarted(let reason): return "not started: \(reason)"
    }
  }
}

/// One line a command wrote, for the log.
public enum ExecLine: Sendable, Equatable {
  case stdout(String)
  case stderr(String)
}
