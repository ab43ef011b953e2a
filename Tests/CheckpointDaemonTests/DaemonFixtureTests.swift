import CheckpointFormats
import Clocks
import Dispatch
import Foundation
import Synchronization
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// A converter that writes a small `pytorch_model.bin`, or fails, or blocks until released, or runs a body.
final class FakeConverter: CheckpointConverting {
  enum Behaviour: Sendable {
    case succeed
    case fail(CheckpointError)
    /// Writes a temporary, reports progress, then waits for `release()` and stops as a cancelled conversion.
    case blockUntilReleased
    case custom(@Sendable (String) throws -> ConversionOutcome)
  }

  let behaviour: Mutexed<Behaviour>
  let calls = Mutexed([String]())
  private let gate = DispatchSemaphore(value: 0)

  init(_ behaviour: Behaviour = .succeed) { self.behaviour = Mutexed(behaviour) }

  /// Lets one blocked conversion go on.
  func release() { gate.signal() }

  var callCount: Int { calls.withLock { $0.count } }

  static let outcome = ConversionOutcome(
    sources: [ManifestFile(name: "model.safetensors", bytes: 2)],
    outputs: [ManifestFile(name: "pytorch_model.bin", bytes: 7)], tensors: 1, verified: true)

  func convert(
    folder: String, watch: WatchConfig, isCancelled: @escaping @Sendable () -> Bool,
    progress: @escaping @Sendable (Int64, Int64) -> Void
  ) throws -> ConversionOutcome {
    calls.withLock { $0.append(folder) }
    switch behaviour.withLock({ $0 }) {
    case .succeed:
      try "weights".write(toFile: folder + "/pytorch_model.bin", atomically: false, encoding: .utf8)
      progress(7, 7)
      return Self.outcome
    case .fail(let error):
      throw error
    case .blockUntilReleased:
      let temporary = folder + "/" + OutputFile.temporaryPrefix + "pytorch_model.bin.test"
      try "partial".write(toFile: temporary, atomically: false, encoding: .utf8)
      progress(1, 100)
      gate.wait()
      guard isCancelled() else { return Self.outcome }
      throw CheckpointError(.cancelled, path: folder, "cancelled")
    case .custom(let body):
      return try body(folder)
    }
  }
}

/// A config folder, a watched root and a daemon driven by a test clock.
final class DaemonFixture: Sendable {
  let base: WatcherTempDir
  let root: String
  let configPath: String
  let converter: FakeConverter
  let clock = TestClock<Duration>()
  let daemon: Daemon
  private let task = Mutexed<Task<Void, Never>?>(nil)

  init(
    converter: FakeConverter = FakeConverter(), notifier: SystemdNotifier = SystemdNotifier(environment: [:]),
    createRoot: Bool = true, settle: Double = 0, workers: Int = 1, extraDropinDirs: [String] = [],
    root rootName: String = "run", rootPath: String? = nil, dropinExtra: String = "", mainExtra: String = "",
    execKillGrace: Duration = .seconds(10)
  ) throws {
    base = try WatcherTempDir()
    root = rootPath ?? base.path + "/" + rootName
    if createRoot { try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true) }
    try FileManager.default.createDirectory(atPath: base.path + "/watch.d", withIntermediateDirectories: true)
    configPath = base.path + "/ckptd.toml"
    let dirs = ([base.path + "/watch.d"] + extraDropinDirs).map { "\"\($0)\"" }.joined(separator: ", ")
    try """
    status_file = "\(base.path)/status.json"
    dropin_dirs = [\(dirs)]
    workers = \(workers)
    log_level = "error"
    \(mainExtra)
    """.write(toFile: configPath, atomically: false, encoding: .utf8)
    try """
    path = "\(root)"
    format = "bin"
    settle_seconds = \(settle)
    \(dropinExtra)
    """.write(toFile: base.path + "/watch.d/10-run.toml", atomically: false, encoding: .utf8)
    self.converter = converter
    daemon = try Daemon(
      options: Daemon.Options(
        configPath: configPath, converter: converter, notifier: notifier, structuralCheck: { _ in },
        handleSignals: false, stopTimeout: .seconds(5), clock: clock, execKillGrace: execKillGrace))
  }

  func start() {
    let daemon = self.daemon
    task.withLock { $0 = Task { await daemon.run() } }
  }

  func stop() async {
    daemon.stop()
    await task.withLock { $0 }?.value
  }

  /// Waits for `condition`, handing the daemon its next deadline on the test clock whenever one is pending.
  /// The daemon is asked for its deadline (a note may have been taken by an earlier wait); a note is awaited
  /// only after that, so each round either moves the clock (its timer then sends a note) or waits for an input.
  /// Returns false only if the daemon stopped first (a condition that never comes hits the suite's time limit).
  @discardableResult
  func until(_ condition: @Sendable (Daemon) async -> Bool) async -> Bool {
    var notes = daemon.notes.makeAsyncIterator()
    while true {
      if await condition(daemon) { return true }
      if let wake = await daemon.nextWake { await advance(by: wake) }
      guard let note = await notes.next(), note != .stopped else { return await condition(daemon) }
    }
  }

  /// Moves the test clock just past the daemon's deadline: `TestClock` still suspends a sleep registered for
  /// exactly "now", and the daemon's timer task may register its sleep only after the clock moved.
  private func advance(by wake: Duration) async {
    await clock.advance(by: wake + .nanoseconds(1))
  }

  /// Runs every deadline until the daemon has nothing left to do but wait for an input (no conversion
  /// running either); returns how far the clock went. Asks the daemon itself (a note may have been taken by
  /// an earlier wait), and waits for a note only while something is due or running.
  @discardableResult
  func settle() async -> Duration {
    var advanced = Duration.zero
    var notes = daemon.notes.makeAsyncIterator()
    while true {
      let (wake, conversions) = await daemon.pendingWork
      if wake == nil && conversions == 0 { return advanced }
      if let wake {
        await advance(by: wake)
        advanced += wake
      }
      guard let note = await notes.next(), note != .stopped else { return advanced }
    }
  }

  /// Writes a finished checkpoint folder.
  @discardableResult
  func checkpoint(_ name: String, marker: Bool = true, in directory: String? = nil) throws -> String {
    let folder = (directory ?? root) + "/" + name
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try "ok".write(toFile: folder + "/model.safetensors", atomically: false, encoding: .utf8)
    if marker { try "{}".write(toFile: folder + "/trainer_state.json", atomically: false, encoding: .utf8) }
    return folder
  }

  func events(_ name: String, in directory: String? = nil) -> [ManifestEvent] {
    let manifest = Manifest(path: (directory ?? root) + "/.ckptd-manifest.jsonl")
    return ((try? manifest.read()) ?? []).filter { $0.checkpoint == name }.map(\.event)
  }

  deinit { base.cleanup() }
}

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
final class NotifyListener: Sendable {
  let path: String
  let fd: Int32
  private let received = Mutexed([String]())

  init(directory: String) {
    path = directory + "/notify.sock"
    fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
      for (index, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
    }
    _ = withUnsafePointer(to: &address) { pointer in
      pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
  }

  /// Every line received so far (the daemon sends synchronously, so what it sent before its last note is here).
  var lines: [String] {
    received.withLock { received in
      var buffer = [UInt8](repeating: 0, count: 4096)
      while true {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 { break }
        received += String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\n").map(String.init)
      }
      return received
    }
  }

  deinit { close(fd) }
}
