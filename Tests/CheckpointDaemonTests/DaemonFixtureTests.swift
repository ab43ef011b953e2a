import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// A converter that writes a small `pytorch_model.bin` and can fail, block until cancelled, or count calls.
final class FakeConverter: CheckpointConverting, @unchecked Sendable {
  enum Behaviour: Sendable {
    case succeed
    case fail(CheckpointError)
    case blockUntilCancelled
  }

  let behaviour: Locked<Behaviour>
  let calls = Locked([String]())

  init(_ behaviour: Behaviour = .succeed) { self.behaviour = Locked(behaviour) }

  func convert(
    folder: String, watch: WatchConfig, isCancelled: @escaping @Sendable () -> Bool,
    progress: @escaping @Sendable (Int64, Int64) -> Void
  ) throws -> ConversionOutcome {
    calls.withLock { $0.append(folder) }
    switch behaviour.current {
    case .succeed:
      try "weights".write(toFile: folder + "/pytorch_model.bin", atomically: false, encoding: .utf8)
      progress(7, 7)
      return ConversionOutcome(
        sources: [ManifestFile(name: "model.safetensors", bytes: 2)],
        outputs: [ManifestFile(name: "pytorch_model.bin", bytes: 7)], tensors: 1, verified: true)
    case .fail(let error):
      throw error
    case .blockUntilCancelled:
      let temporary = folder + "/" + OutputFile.temporaryPrefix + "pytorch_model.bin.test"
      try "partial".write(toFile: temporary, atomically: false, encoding: .utf8)
      while !isCancelled() {
        progress(1, 100)
        Thread.sleep(forTimeInterval: 0.01)
      }
      throw CheckpointError(.init("cancelled"), path: folder, "cancelled")
    }
  }
}

/// A config folder, a watched root and a running daemon.
final class DaemonFixture: @unchecked Sendable {
  let base: WatcherTempDir
  let root: String
  let configPath: String
  let converter: FakeConverter
  let daemon: Daemon
  private var task: Task<Void, Never>?

  init(
    converter: FakeConverter = FakeConverter(), notifier: SystemdNotifier = SystemdNotifier(environment: [:]),
    createRoot: Bool = true, settle: Double = 0
  ) throws {
    base = try WatcherTempDir()
    root = base.path + "/run"
    if createRoot { try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true) }
    try FileManager.default.createDirectory(atPath: base.path + "/watch.d", withIntermediateDirectories: true)
    configPath = base.path + "/ckptd.toml"
    try """
    status_file = "\(base.path)/status.json"
    dropin_dirs = ["\(base.path)/watch.d"]
    workers = 1
    log_level = "error"
    """.write(toFile: configPath, atomically: false, encoding: .utf8)
    try """
    path = "\(root)"
    format = "bin"
    settle_seconds = \(settle)
    """.write(toFile: base.path + "/watch.d/10-run.toml", atomically: false, encoding: .utf8)
    self.converter = converter
    daemon = try Daemon(
      options: Daemon.Options(
        configPath: configPath, converter: converter, notifier: notifier, structuralCheck: { _ in }, tick: 0.05,
        handleSignals: false, stopTimeout: 5))
  }

  func start() {
    let daemon = self.daemon
    task = Task { await daemon.run() }
  }

  func stop() async {
    daemon.stop()
    await task?.value
    task = nil
  }

  /// Writes a finished checkpoint folder.
  @discardableResult
  func checkpoint(_ name: String, marker: Bool = true) throws -> String {
    let folder = root + "/" + name
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try "ok".write(toFile: folder + "/model.safetensors", atomically: false, encoding: .utf8)
    if marker { try "{}".write(toFile: folder + "/trainer_state.json", atomically: false, encoding: .utf8) }
    return folder
  }

  func events(_ name: String) -> [ManifestEvent] {
    ((try? Manifest(path: root + "/.ckptd-manifest.jsonl").read()) ?? []).filter { $0.checkpoint == name }.map(\.event)
  }

  deinit { base.cleanup() }
}

/// Polls `condition` every 20 ms for up to `timeout` seconds.
func eventually(timeout: Double = 10, _ condition: () -> Bool) async -> Bool {
  let deadline = Date().addingTimeInterval(timeout)
  while Date() < deadline {
    if condition() { return true }
    try? await Task.sleep(for: .milliseconds(20))
  }
  return condition()
}

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
final class NotifyListener: @unchecked Sendable {
  let path: String
  let fd: Int32
  private var received: [String] = []

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

  /// Every line received so far.
  var lines: [String] {
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      let count = recv(fd, &buffer, buffer.count, 0)
      if count <= 0 { break }
      received += String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\n").map(String.init)
    }
    return received
  }

  deinit { close(fd) }
}
