import Foundation
import Subprocess
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// What to run after a conversion: the drop-in's `exec_after` argv, where, with which environment, how long.
public struct ExecRequest: Sendable, Equatable {
  /// The command: an absolute executable and its arguments, never passed through a shell.
  public var argv: [String]
  /// The working directory (the checkpoint's output directory).
  public var directory: String
  /// Added to ckptd's own environment (`CKPTD_CHECKPOINT`, `CKPTD_FORMAT`, ...).
  public var environment: [String: String]
  /// After this long the command's process group gets SIGTERM, then SIGKILL `killGrace` later.
  public var timeout: Duration

  public init(argv: [String], directory: String, environment: [String: String], timeout: Duration) {
    self.argv = argv
    self.directory = directory
    self.environment = environment
    self.timeout = timeout
  }
}

/// Runs `exec_after` commands with swift-subprocess: in a process group of their own, output read line by line
/// for the log, the last lines of standard error kept for the manifest, a timeout that signals the whole
/// group, and nothing of the group left running once the command itself has ended.
///
/// Time comes from the injected clock, so tests drive the timeout with a test clock. Cancelling the calling
/// task (the daemon stopping) tears the group down: SIGTERM, then SIGKILL after `killGrace`.
public struct ExecAfterRunner: Sendable {
  /// How many lines of standard error the outcome keeps.
  public static let tailLines = 20

  /// Measures the timeout, the grace period and the run's seconds.
  public var clock: any Clock<Duration>
  /// Between SIGTERM and SIGKILL.
  public var killGrace: Duration

  public init(clock: any Clock<Duration> = ContinuousClock(), killGrace: Duration = .seconds(10)) {
    self.clock = clock
    self.killGrace = killGrace
  }

  /// Runs `request`, handing every output line to `log` as it arrives; never throws.
  public func run(_ request: ExecRequest, log: @escaping @Sendable (ExecLine) -> Void) async -> ExecOutcome {
    // The injected clock decides when to signal; the seconds reported are the real ones.
    let start = ContinuousClock.now
    func seconds() -> Double {
      let elapsed = start.duration(to: ContinuousClock.now)
      return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
    guard let executable = request.argv.first else {
      return ExecOutcome(termination: .notStarted("exec_after is empty"), seconds: 0)
    }
    var options = PlatformOptions()
    options.processGroupID = 0  // a group of its own, so that signals reach everything it starts
    options.teardownSequence = [.gracefulShutDown(toProcessGroup: true, allowedDurationToNextStep: killGrace)]
    var environment: [Environment.Key: String?] = [:]
    for (key, value) in request.environment { environment[Environment.Key(stringLiteral: key)] = value }
    let grace = killGrace
    do {
      let result = try await Subprocess.run(
        .path(FilePath(executable)), arguments: Arguments(Array(request.argv.dropFirst())),
        environment: .inherit.updating(environment), workingDirectory: FilePath(request.directory),
        platformOptions: options, input: .none, output: .sequence, error: .sequence
      ) { execution in
        await Self.supervise(execution, timeout: request.timeout, grace: grace, clock: clock, log: log)
      }
      let termination: ExecOutcome.Termination
      switch result.terminationStatus {
      case .exited(let status): termination = .exited(status)
      case .signaled(let signal): termination = .signaled(signal)
      }
      let supervision = result.closureResult
      return ExecOutcome(
        termination: termination, seconds: seconds(), stderrTail: supervision.tail, timedOut: supervision.timedOut)
    } catch {
      return ExecOutcome(termination: .notStarted("\(executable): \(error)"), seconds: seconds())
    }
  }

  struct Supervision: Sendable {
    var tail: [String]
    var timedOut: Bool
  }

  private enum Part: Sendable {
    case stdoutDone
    case stderrDone([String])
    case exited
    case timeout
    case kill
    case cancelled
  }

  /// Reads both streams, watches the main process's exit and the deadline, and signals the group.
  private static func supervise(
    _ execution: Execution<NoInput, SequenceOutput, SequenceOutput>, timeout: Duration, grace: Duration,
    clock: any Clock<Duration>, log: @escaping @Sendable (ExecLine) -> Void
  ) async -> Supervision {
    let group = execution.processIdentifier.value
    // Our own copy of the pidfd: readable once the main process has exited, reaped or not.
    let pidfd = dup(execution.processIdentifier.processDescriptor)
    defer { if pidfd >= 0 { close(pidfd) } }
    return await withTaskGroup(of: Part.self) { tasks in
      tasks.addTask {
        do {
          for try await line in execution.standardOutput.strings() { log(.stdout(line)) }
        } catch {}
        return .stdoutDone
      }
      tasks.addTask {
        var tail: [String] = []
        do {
          for try await line in execution.standardError.strings() {
            log(.stderr(line))
            tail.append(line)
            if tail.count > tailLines { tail.removeFirst(tail.count - tailLines) }
          }
        } catch {}
        return .stderrDone(tail)
      }
      if pidfd >= 0 {
        tasks.addTask {
          await waitReadable(pidfd)
          return .exited
        }
      }
      tasks.addTask {
        do {
          try await clock.sleep(for: timeout)
          return .timeout
        } catch {
          return .cancelled
        }
      }
      var outputDone = false
      var tail: [String]?
      var exited = pidfd < 0
      var timedOut = false
      var killScheduled = false
      func terminateGroup() {
        _ = kill(-group, SIGTERM)
        guard !killScheduled else { return }
        killScheduled = true
        tasks.addTask {
          do {
            try await clock.sleep(for: grace)
            return .kill
          } catch {
            return .cancelled
          }
        }
      }
      while let part = await tasks.next() {
        switch part {
        case .stdoutDone: outputDone = true
        case .stderrDone(let lines): tail = lines
        case .exited:
          exited = true
          // Whatever it started and left behind goes with it.
          terminateGroup()
        case .timeout:
          if !exited {
            timedOut = true
            terminateGroup()
          }
        case .kill: _ = kill(-group, SIGKILL)
        case .cancelled: break
        }
        if outputDone && tail != nil && exited { break }
      }
      tasks.cancelAll()
      return Supervision(tail: tail ?? [], timedOut: timedOut)
    }
  }

  /// Blocks a thread of its own (not the cooperative pool) until `fd` is readable.
  private static func waitReadable(_ fd: Int32) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let thread = Thread {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while poll(&entry, 1, -1) < 0 && errno == EINTR {}
        continuation.resume()
      }
      thread.start()
    }
  }
}
