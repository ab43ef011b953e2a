import Foundation
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// A datagram socket the test binds, standing in for systemd's notify socket.
final class NotifySocket {
  let fd: Int32
  let name: String

  /// `name` is a file path, or `@name` for the abstract namespace.
  init(name: String) throws {
    self.name = name
    fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(name.utf8)
    let abstract = bytes.first == UInt8(ascii: "@")
    if abstract { bytes[0] = 0 }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let length = socklen_t(2 + bytes.count + (abstract ? 0 : 1))
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    var timeout = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
  }

  deinit {
    close(fd)
    if !name.hasPrefix("@") { unlink(name) }
  }

  /// The next datagram, or nil after the 2 s timeout.
  func receive() -> String? {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    guard got >= 0 else { return nil }
    return String(decoding: buffer[0..<got], as: UTF8.self)
  }
}

@Suite(.timeLimit(.minutes(1))) struct NotifyTests {
  /// A notify socket nobody reads (a hung or stopped manager) must not block the daemon's actor: once its
  /// queue is full (net.unix.max_dgram_qlen), messages are dropped, not waited for.
  @Test func fullSocketDropsInsteadOfBlocking() throws {
    let path = NSTemporaryDirectory() + "ckptd-full-\(UUID().uuidString).sock"
    let socket = try NotifySocket(name: path)
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path])
    var sent = 0
    for _ in 0..<2000 where notifier.watchdog() { sent += 1 }
    #expect(sent > 0)
    #expect(sent < 2000)
    #expect(socket.receive() == "WATCHDOG=1")
  }

  @Test func pathSocketReceivesReadyStatusWatchdogReloadStopping() throws {
    let dir = CoreTempDir()
    let socket = try NotifySocket(name: dir.sub("notify.sock"))
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name])
    #expect(notifier.isEnabled)
    #expect(notifier.ready())
    #expect(socket.receive() == "READY=1")
    #expect(notifier.status("watching 2 dirs\nsecond line"))
    #expect(socket.receive() == "STATUS=watching 2 dirs second line")
    #expect(notifier.watchdog())
    #expect(socket.receive() == "WATCHDOG=1")
    #expect(notifier.ready(status: "running"))
    #expect(socket.receive() == "READY=1\nSTATUS=running")
    #expect(notifier.reloading())
    let reloading = socket.receive() ?? ""
    #expect(reloading.hasPrefix("MONOTONIC_USEC="))
    #expect(reloading.hasSuffix("\nRELOADING=1"))
    #expect(notifier.stopping())
    #expect(socket.receive() == "STOPPING=1")
  }

  @Test func abstractSocketReceives() throws {
    let name = "@ckptd-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let socket = try NotifySocket(name: name)
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": name])
    #expect(notifier.send(["READY": "1", "STATUS": "abstract ok"]))
    #expect(socket.receive() == "READY=1\nSTATUS=abstract ok")
    #expect(notifier.watchdog())
    #expect(socket.receive() == "WATCHDOG=1")
  }

  @Test func unsetSocketIsANoOp() {
    let notifier = SystemdNotifier(environment: [:])
    #expect(!notifier.isEnabled)
    #expect(!notifier.ready())
    #expect(notifier.watchdogInterval == nil)
  }

  @Test func missingSocketFailsQuietly() {
    let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/ckptd-notify.sock"])
    #expect(!notifier.ready())
  }

  @Test func watchdogIntervalFromEnvironment() {
    let ours = SystemdNotifier(environment: ["WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "\(getpid())"])
    #expect(ours.watchdogInterval == .seconds(60))
    let anyPid = SystemdNotifier(environment: ["WATCHDOG_USEC": "1500000"])
    #expect(anyPid.watchdogInterval == .milliseconds(1500))
    let other = SystemdNotifier(environment: ["WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"])
    #expect(other.watchdogInterval == nil)
    let bad = SystemdNotifier(environment: ["WATCHDOG_USEC": "soon"])
    #expect(bad.watchdogInterval == nil)
  }
}
