import CheckpointFormats
import Dispatch
import Foundation
import Logging
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// The running daemon: watches every configured output directory, converts finished checkpoints, keeps the
/// manifests and the status file, and speaks to systemd.
///
/// One actor owns all of the daemon's state. Every input (inotify events copied out of the inotify thread,
/// the next deadline on the injected clock, signals, reloads, finished conversions) arrives as one
/// `DaemonEvent` stream that `run()` handles in order. Conversions run on their own threads (blocking file
/// I/O stays off the cooperative pool) and report back as events; the manifest is appended only here.
public actor Daemon {
  /// How to run.
  public struct Options: Sendable {
    /// The main config file.
    public var configPath: String
    /// Does the conversions.
    public var converter: any CheckpointConverting
    /// systemd notification (a no-op without `$NOTIFY_SOCKET`).
    public var notifier: SystemdNotifier
    /// Overrides the tracker's structural check (tests).
    public var structuralCheck: (@Sendable (String) throws -> Void)?
    /// Install SIGTERM/SIGINT/SIGHUP handlers (off in tests that run several daemons).
    public var handleSignals: Bool
    /// How long a stop waits for the running conversions to abandon their temporaries.
    public var stopTimeout: Duration
    /// Every deadline is on this clock (`ContinuousClock`; a test clock in tests).
    public var clock: any Clock<Duration>
    /// Wall time for timestamps and for comparing with file modification times.
    public var wallTime: @Sendable () -> Date
    /// How long after a scan a finished-looking folder is scanned again to see that its sizes are stable.
    public var stabilityDelay: Duration
    /// How long a burst of drop-in changes is collected before one reload.
    public var reloadDelay: Duration
    /// Between the SIGTERM and the SIGKILL sent to an `exec_after` command's process group.
    public var execKillGrace: Duration

    /// Creates options.
    public init(
      configPath: String, converter: any CheckpointConverting,
      notifier: SystemdNotifier = SystemdNotifier(),
      structuralCheck: (@Sendable (String) throws -> Void)? = nil,
      handleSignals: Bool = true,
      stopTimeout: Duration = .seconds(20),
      clock: any Clock<Duration> = ContinuousClock(),
      wallTime: @escaping @Sendable () -> Date = { Date() },
      stabilityDelay: Duration = .milliseconds(500),
      reloadDelay: Duration = .milliseconds(300),
      execKillGrace: Duration = .seconds(10)
    ) {
      self.configPath = configPath
      self.converter = converter
      self.notifier = notifier
      self.structuralCheck = structuralCheck
      self.handleSignals = handleSignals
      self.stopTimeout = stopTimeout
      self.clock = clock
      self.wallTime = wallTime
      self.stabilityDelay = stabilityDelay
      self.reloadDelay = reloadDelay
      self.execKillGrace = execKillGrace
    }
  }

  /// One conversion, queued or running.
  struct Job: Sendable {
    var rootPath: String
    var name: String
    var folder: String
    var watch: WatchConfig
    /// The root directory, held open while the job runs: its inode cannot be reused, so a root removed and
    /// re-created meanwhile is told from the one the job started in (and gets no record of it).
    var rootHandle: FileDescriptor?
    var token = CancelToken()
    var start = Date(timeIntervalSince1970: 0)
    /// The checkpoint's claim, held from before the conversion until its manifest record is durable.
    var claim: HeldClaim?
    /// When the claim is refreshed next.
    var beatAt: Duration?
    /// The claim was taken over by another instance: the conversion stops and commits nothing.
    var claimLost = false
  }

  /// The version written into the status file.
  public static let version = "0.1.0"

  let options: Options
  let clock: DaemonClock
  let logger = Logger(label: "ckptd")
  let watcher: InotifyWatcher
  let events: AsyncStream<DaemonEvent>
  let input: AsyncStream<DaemonEvent>.Continuation
  /// Notes for observers: the newest only (an observer wants the state now, not its history).
  public nonisolated let notes: AsyncStream<DaemonNote>
  let noteSink: AsyncStream<DaemonNote>.Continuation
  var publisher: StatusPublisher
  var config: DaemonConfig
  var roots: [String: WatchedRoot] = [:]
  var registry = WatchRegistry()
  var rescans = 0
  var stopping = false
  var stopped = false
  /// Why the last reload failed (the main file broke), shown in the status until a reload works.
  var reloadError: DropinProblem?
  var lastStatusLine = ""
  /// The state changed since the status document was last copied from it.
  var statusStale = false
  /// Folder path to the clock time it is evaluated again.
  var folderDue: [String: Due] = [:]
  var reloadAt: Duration?
  var watchdogAt: Duration?
  var stopDeadline: Duration?
  var queued: [Job] = []
  var running: [String: Job] = [:]
  /// `exec_after` commands running, by checkpoint folder; they take worker slots like conversions.
  var hooks: [String: HookJob] = [:]
  /// Recorded as things happen; written to `metrics_file` at most once a second.
  let metrics = DaemonMetrics()
  var metricsDirty = true
  var metricsNextWrite: Duration = .zero
  /// inotify overflows and rescans already counted in `metrics`.
  var metricsCounted = (overflows: 0, rescans: 0)
  /// Claims taken and others' claims observed (staleness is judged on this instance's clock).
  var claimBook: ClaimBook
  var timerTask: Task<Void, Never>?
  var armedDeadline: Duration?
  var signalSources: [any DispatchSourceSignal] = []

  /// Loads the configuration (a broken main file throws; a broken drop-in is only reported).
  public init(options: Options) throws {
    self.options = options
    clock = DaemonClock(options.clock, wallTime: options.wallTime)
    config = try ConfigLoader.load(path: options.configPath)
    claimBook = ClaimBook(
      identity: .current(node: config.nodeName), ttl: config.claimTTL, clock: options.clock)
    (events, input) = AsyncStream<DaemonEvent>.makeStream(bufferingPolicy: .unbounded)
    (notes, noteSink) = AsyncStream<DaemonNote>.makeStream(bufferingPolicy: .bufferingNewest(1))
    let sink = input
    watcher = try InotifyWatcher { sink.yield(.watcher($0)) }
    let heartbeat = options.notifier.watchdogInterval.map { DaemonClock.seconds($0) / 2 }
    publisher = StatusPublisher(
      path: config.statusFile,
      initial: StatusSnapshot(
        pid: getpid(), version: Self.version, startedAt: options.wallTime(), heartbeatSeconds: heartbeat))
  }

  /// Installs the daemon's log handler at the level named in the config (`info` when unknown).
  public static func bootstrapLogging(levelName: String) {
    DaemonLogging.bootstrap(level: DaemonLogging.level(named: levelName) ?? .info)
  }

  /// The configuration in force.
  public var currentConfig: DaemonConfig { config }

  /// The status document as it stands (not necessarily written yet).
  public var status: StatusSnapshot {
    if statusStale { refreshStatus() }
    return publisher.snapshot
  }

  /// Asks the daemon to stop, as SIGTERM does.
  public nonisolated func stop() { input.yield(.stop(reason: "stop requested")) }

  /// Asks the daemon to reload its configuration, as SIGHUP does.
  public nonisolated func reload() { input.yield(.reload(reason: "reload requested")) }

  /// Asks for a full rescan, as an inotify queue overflow does.
  public nonisolated func rescan(reason: String) { input.yield(.watcher(.rescan(reason: reason))) }

  /// Runs until SIGTERM/SIGINT (or `stop()`); returns after the running conversions were abandoned.
  public func run() async {
    start()
    settle()
    for await event in events {
      handle(event)
      if stopped { break }
      settle()
    }
    timerTask?.cancel()
    noteSink.yield(.stopped)
    noteSink.finish()
  }

  // MARK: Lifecycle

  private func start() {
    publisher.update { $0.state = .starting }
    reportProblems()
    if options.handleSignals { installSignalHandlers() }
    watchDropinDirectories()
    for watch in config.watches where roots[watch.path] == nil {
      let root = makeRoot(watch)
      roots[watch.path] = root
      detectFileSystem(root)
      establish(root, reconcile: true)
    }
    evaluateDue()
    publisher.update { $0.state = .running }
    publishStatus()
    flushStatus()
    _ = options.notifier.ready(status: summaryLine())
    logger.info("ready: \(summaryLine())")
    if let interval = options.notifier.watchdogInterval {
      _ = options.notifier.watchdog()
      watchdogAt = clock.now() + interval / 2
    }
  }

  /// The state of a newly watched directory.
  func makeRoot(_ watch: WatchConfig) -> WatchedRoot {
    let lock = ManifestLock(
      manifestPath: watch.manifestPath, identity: claimBook.identity, ttl: claimBook.ttl, clock: options.clock)
    return WatchedRoot(config: watch, lock: lock, structuralCheck: options.structuralCheck)
  }

  private func installSignalHandlers() {
    let sink = input
    for number in [SIGTERM, SIGINT, SIGHUP] {
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
      source.setEventHandler {
        switch number {
        case SIGTERM: sink.yield(.stop(reason: "SIGTERM"))
        case SIGINT: sink.yield(.stop(reason: "SIGINT"))
        default: sink.yield(.reload(reason: "SIGHUP"))
        }
      }
      source.resume()
      signalSources.append(source)
    }
  }

  /// One input.
  func handle(_ event: DaemonEvent) {
    switch event {
    case .watcher(let message):
      if !stopping { handle(message) }
    case .timer:
      armedDeadline = nil
      timerTask = nil
      timerFired()
    case .stop(let reason):
      beginStop(reason: reason)
    case .reload(let reason):
      reloadNow(reason: reason)
    case .progress(let folder, let done, let total):
      guard let job = running[folder] else { return }
      publisher.update { status in
        if let index = status.active.firstIndex(where: {
          $0.directory == job.rootPath && $0.checkpoint == job.name
        }) {
          status.active[index].bytesDone = done
          status.active[index].bytesTotal = total
        }
      }
    case .finished(let folder, let result, let end):
      guard let job = running.removeValue(forKey: folder) else { return }
      finish(job, result: result, end: end)
      if stopping && running.isEmpty && hooks.isEmpty { completeStop() }
    case .hookFinished(let folder, let outcome, let end):
      guard let hook = hooks.removeValue(forKey: folder) else { return }
      hookFinished(hook, outcome: outcome, end: end)
      if stopping && running.isEmpty && hooks.isEmpty { completeStop() }
    }
  }

  /// After each input: evaluate what is due, start conversions, publish, re-arm the one timer, tell observers.
  private func settle() {
    guard !stopped else { return }
    if !stopping {
      evaluateDue()
      startQueued()
    }
    publishStatus()
    publishMetrics()
    let line = summaryLine()
    if line != lastStatusLine && !stopping {
      lastStatusLine = line
      _ = options.notifier.status(line)
    }
    rearmTimer()
    let now = clock.now()
    noteSink.yield(.idle(nextWake: armedDeadline.map { max($0 - now, .zero) }))
  }

  private func timerFired() {
    let now = clock.now()
    if let at = stopDeadline, at <= now {
      logger.warning("conversions did not stop within \(options.stopTimeout)")
      completeStop()
      return
    }
    if let at = reloadAt, at <= now {
      reloadAt = nil
      reloadNow(reason: "drop-in directory changed")
    }
    refreshClaims(now: now)
    for root in roots.values {
      if let at = root.lockRetryAt, at <= now { flushRecords(root) }
    }
    if !stopping {
      pollDue(now: now)
      for root in roots.values {
        if let at = root.sweepAt, at <= now { sweepLeftovers(root) }
      }
    }
    if let at = watchdogAt, at <= now, let interval = options.notifier.watchdogInterval {
      _ = options.notifier.watchdog()
      watchdogAt = now + interval / 2
      // The watchdog's pace is also the status file's heartbeat (`heartbeat_seconds`).
      publisher.touch()
    }
  }

  /// The earliest deadline pending, if any.
  private func nextDeadline() -> Duration? {
    var candidates: [Duration?] = [
      reloadAt, watchdogAt, stopDeadline, publisher.nextWrite, statusStale ? publisher.earliestWrite : nil,
      metricsDeadline, nextClaimBeat, roots.values.compactMap(\.lockRetryAt).min(),
    ]
    if !stopping {
      candidates.append(folderDue.values.map(\.at).min())
      candidates.append(roots.values.compactMap(\.pollAt).min())
      candidates.append(roots.values.compactMap(\.sweepAt).min())
    }
    return candidates.compactMap { $0 }.min()
  }

  /// Keeps one timer at the next deadline. A later deadline keeps the armed timer (it fires early, finds
  /// nothing due and re-arms): a burst of events that each push a folder's deadline creates no task each.
  private func rearmTimer() {
    let next = nextDeadline()
    if let next, let armed = armedDeadline, timerTask != nil, armed <= next { return }
    guard next != armedDeadline || timerTask == nil else { return }
    timerTask?.cancel()
    timerTask = nil
    armedDeadline = next
    guard let next else { return }
    let sleep = clock.sleepUntil
    let sink = input
    timerTask = Task.detached {
      do {
        try await sleep(next)
      } catch {
        return
      }
      sink.yield(.timer)
    }
  }

  func beginStop(reason: String) {
    guard !stopping else { return }
    stopping = true
    logger.info("stopping (\(reason)): abandoning \(running.count) running conversion(s)")
    _ = options.notifier.stopping()
    publisher.update { $0.state = .stopping }
    flushStatus()
    for source in signalSources { source.cancel() }
    signalSources.removeAll()
    queued.removeAll()
    folderDue.removeAll()
    reloadAt = nil
    watchdogAt = nil
    for job in running.values { job.token.cancel() }
    // Cancelling a hook's task tears its process group down (SIGTERM, then SIGKILL).
    for hook in hooks.values { hook.task.cancel() }
    if running.isEmpty && hooks.isEmpty {
      completeStop()
    } else {
      stopDeadline = clock.now() + options.stopTimeout
    }
  }

  private func completeStop() {
    guard !stopped else { return }
    stopped = true
    stopDeadline = nil
    // The engine removes its temporaries when cancelled; this catches anything left by a hard failure (under
    // the job's claim, while it is still ours). Records still waiting for the manifest lock get one more try.
    for job in running.values {
      removeOwnTemporaries(job)
      job.claim?.release()
      try? job.rootHandle?.close()
    }
    for root in roots.values where !root.unrecorded.isEmpty {
      flushRecords(root)
      for item in root.unrecorded { item.claim?.release() }
      root.unrecorded = []
    }
    publisher.update { $0.active = [] }
    flushStatus()
    metricsDirty = true
    writeMetrics()
    watcher.close()
    input.finish()
  }

  private func reportProblems() {
    for problem in config.problems { logger.error("drop-in skipped: \(problem.description)") }
  }
}
