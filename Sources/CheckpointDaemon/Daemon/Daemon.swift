import CheckpointFormats
import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// The running daemon: watches every configured output directory, converts finished checkpoints, keeps the
/// manifests and the status file, and speaks to systemd.
///
/// All state lives on one serial queue (the event loop). Inotify messages, the tick timer, signals and
/// finished conversions are all funnelled onto it; conversions themselves run on the queue's worker threads.
public final class Daemon: @unchecked Sendable {
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
    /// Seconds between re-evaluations of pending checkpoints and missing directories.
    public var tick: Double
    /// Install SIGTERM/SIGINT/SIGHUP handlers (off in tests that run several daemons).
    public var handleSignals: Bool
    /// Seconds a stop waits for the running conversions to abandon their temporaries.
    public var stopTimeout: Double

    /// Creates options.
    public init(
      configPath: String, converter: any CheckpointConverting,
      notifier: SystemdNotifier = SystemdNotifier(),
      structuralCheck: (@Sendable (String) throws -> Void)? = nil, tick: Double = 0.5,
      handleSignals: Bool = true,
      stopTimeout: Double = 20
    ) {
      self.configPath = configPath
      self.converter = converter
      self.notifier = notifier
      self.structuralCheck = structuralCheck
      self.tick = tick
      self.handleSignals = handleSignals
      self.stopTimeout = stopTimeout
    }
  }

  /// The version written into the status file.
  public static let version = "0.1.0"

  let options: Options
  let loop = DispatchQueue(label: "ckptd.loop")
  let logger = Logger(label: "ckptd")
  let watcher: InotifyWatcher
  let queue: ConversionQueue
  let publisher: StatusPublisher
  var config: DaemonConfig
  var roots: [String: WatchedRoot] = [:]
  var registry = WatchRegistry()
  var rescans = 0
  var stopping = false
  var started = false
  var reloadScheduled = false
  /// Why the last reload failed (the main file broke), shown in the status until a reload works.
  var reloadError: DropinProblem?
  var lastStatusLine = ""
  var lastWatchdog = 0.0
  var lastPresenceCheck = 0.0
  /// When `publishStatus` last handed a document to the publisher (an unchanged one is re-sent only as a
  /// heartbeat, so that an idle daemon does not re-encode and rewrite the status file every tick).
  var lastStatusPublish = 0.0
  var sources: [any DispatchSourceProtocol] = []
  var pump: Task<Void, Never>?
  var stopContinuation: CheckedContinuation<Void, Never>?

  /// Loads the configuration (a broken main file throws; a broken drop-in is only reported).
  public init(options: Options) throws {
    self.options = options
    config = try ConfigLoader.load(path: options.configPath)
    watcher = try InotifyWatcher()
    queue = ConversionQueue(workers: config.workers)
    publisher = StatusPublisher(
      path: config.statusFile, initial: StatusSnapshot(pid: getpid(), version: Self.version))
  }

  /// Installs the daemon's log handler at the level named in the config (`info` when unknown).
  public static func bootstrapLogging(levelName: String) {
    DaemonLogging.bootstrap(level: DaemonLogging.level(named: levelName) ?? .info)
  }

  /// The configuration in force.
  public var currentConfig: DaemonConfig { loop.sync { config } }

  /// Runs until SIGTERM/SIGINT (or `stop()`); returns after the running conversions were abandoned.
  public func run() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      loop.async {
        self.stopContinuation = continuation
        self.start()
      }
    }
  }

  /// Asks the daemon to stop, as SIGTERM does.
  public func stop() { loop.async { self.beginStop(reason: "stop requested") } }

  /// Asks the daemon to reload its configuration, as SIGHUP does.
  public func reload() { loop.async { self.reloadNow(reason: "reload requested") } }

  /// Runs `body` on the event loop and returns its result (tests, status).
  public func inspect<T: Sendable>(_ body: @Sendable () -> T) -> T { loop.sync { body() } }

  /// The status document as it stands.
  public var status: StatusSnapshot { publisher.snapshot }

  // MARK: Lifecycle (on the loop)

  private func start() {
    publisher.update { $0.state = .starting }
    reportProblems()
    let messages = watcher.messages
    pump = Task.detached { [self] in
      for await message in messages {
        loop.async { self.handle(message) }
      }
    }
    if options.handleSignals { installSignalHandlers() }
    watchDropinDirectories()
    for watch in config.watches where roots[watch.path] == nil {
      let root = WatchedRoot(config: watch, structuralCheck: options.structuralCheck)
      roots[watch.path] = root
      establish(root, reconcile: true)
    }
    evaluatePending()
    started = true
    publisher.update { $0.state = .running }
    publishStatus()
    publisher.flush()
    _ = options.notifier.ready(status: summaryLine())
    logger.info("ready: \(summaryLine())")
    let timer = DispatchSource.makeTimerSource(queue: loop)
    timer.schedule(deadline: .now() + options.tick, repeating: options.tick)
    timer.setEventHandler { [weak self] in self?.tick() }
    timer.resume()
    sources.append(timer)
  }

  private func installSignalHandlers() {
    for (number, action) in [(SIGTERM, "stop"), (SIGINT, "stop"), (SIGHUP, "reload")] {
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: loop)
      source.setEventHandler { [weak self] in
        guard let self else { return }
        if action == "stop" {
          self.beginStop(reason: number == SIGTERM ? "SIGTERM" : "SIGINT")
        } else {
          self.reloadNow(reason: "SIGHUP")
        }
      }
      source.resume()
      sources.append(source)
    }
  }

  func tick() {
    guard !stopping else { return }
    for root in roots.values where !root.present { establishIfAppeared(root) }
    let now = Date().timeIntervalSince1970
    if now - lastPresenceCheck >= 2 {
      // Events can be lost (overflow) or never come (network filesystems): check the roots by hand too.
      lastPresenceCheck = now
      let unwatchedDropins = config.dropinDirs.filter { Self.isDirectory($0) && registry.descriptor(for: $0) == nil }
      if !unwatchedDropins.isEmpty {
        logger.info("drop-in directory appeared: \(unwatchedDropins)")
        watchDropinDirectories()
        scheduleReload()
      }
      for root in roots.values where root.present {
        if !Self.isDirectory(root.path) {
          rootLost(root)
        } else if registry.descriptor(for: root.path) == nil {
          establish(root, reconcile: false)
        }
      }
    }
    evaluatePending()
    publishStatus()
    let line = summaryLine()
    if line != lastStatusLine {
      lastStatusLine = line
      _ = options.notifier.status(line)
    }
    if let interval = options.notifier.watchdogInterval {
      let now = Date().timeIntervalSince1970
      let half =
        Double(interval.components.seconds) / 2 + Double(interval.components.attoseconds) / 2e18
      if now - lastWatchdog >= min(half, max(options.tick, half / 2)) {
        lastWatchdog = now
        _ = options.notifier.watchdog()
      }
    }
  }

  func beginStop(reason: String) {
    guard !stopping else { return }
    stopping = true
    logger.info("stopping (\(reason)): abandoning \(queue.active.count) running conversion(s)")
    _ = options.notifier.stopping()
    publisher.update { $0.state = .stopping }
    publisher.flush()
    for source in sources { source.cancel() }
    sources.removeAll()
    let activeFolders = queue.active
    let timeout = options.stopTimeout
    DispatchQueue.global().async { [self] in
      if !queue.shutdown(timeout: timeout) {
        logger.warning("conversions did not stop within \(Int(timeout)) s")
      }
      // The engine removes its temporaries when cancelled; this catches anything left by a hard failure.
      for folder in activeFolders { Reconcile.removeStaleTemporaries(in: folder) }
      loop.async { [self] in
        publisher.update { $0.active = [] }
        publisher.flush()
        pump?.cancel()
        watcher.close()
        let continuation = stopContinuation
        stopContinuation = nil
        continuation?.resume()
      }
    }
  }

  private func reportProblems() {
    for problem in config.problems { logger.error("drop-in skipped: \(problem.description)") }
  }
}
