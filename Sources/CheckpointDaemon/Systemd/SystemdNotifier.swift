import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Speaks systemd's notify protocol (sd_notify(3)) over `$NOTIFY_SOCKET` itself: one AF_UNIX datagram per message,
/// to a socket path or an abstract name (`@name`). Every call is a no-op when the variable is unset.
public struct SystemdNotifier: Sendable {
  /// `$NOTIFY_SOCKET`, or nil when not run by systemd with `Type=notify`.
  public let socketPath: String?
  /// `WATCHDOG_USEC` when the watchdog is meant for this process (`WATCHDOG_PID` unset or ours); ping at half of it.
  public let watchdogInterval: Duration?

  /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment`.
  public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
    let socket = environment["NOTIFY_SOCKET"] ?? ""
    socketPath = socket.isEmpty ? nil : socket
    var interval: Duration?
    if let usecText = environment["WATCHDOG_USEC"], let usec = UInt64(usecText), usec > 0 {
      let pidText = environment["WATCHDOG_PID"] ?? ""
      if pidText.isEmpty || Int32(pidText) == getpid() {
        interval = .microseconds(Int64(clamping: usec))
      }
    }
    watchdogInterval = interval
  }

  /// Whether messages go anywhere.
  public var isEnabled: Bool { socketPath != nil }

  /// Sends `KEY=value` lines (sorted by key, so READY=1 and STATUS= go in one datagram). Returns false when the
  /// socket is unset or the send failed (systemd gone: nothing to do about it).
  @discardableResult
  public func send(_ fields: [String: String]) -> Bool {
    let text = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.oneLine($0.value))" }.joined(separator: "\n")
    return send(message: text)
  }

  /// Sends `text` as is (newline-separated assignments).
  @discardableResult
  public func send(message text: String) -> Bool {
    guard let socketPath else { return false }
    return Self.sendDatagram(Array(text.utf8), to: socketPath)
  }

  /// `READY=1`: start-up (or a reload) is done.
  @discardableResult
  public func ready(status: String? = nil) -> Bool {
    var fields = ["READY": "1"]
    if let status { fields["STATUS"] = status }
    return send(fields)
  }

  /// `RELOADING=1` with `MONOTONIC_USEC` (required by `Type=notify-reload` on systemd >= 253, ignored by 252).
  @discardableResult
  public func reloading() -> Bool {
    send(["RELOADING": "1", "MONOTONIC_USEC": String(Self.monotonicMicroseconds())])
  }

  /// `STOPPING=1`: shutdown has begun.
  @discardableResult
  public func stopping() -> Bool {
    send(["STOPPING": "1"])
  }

  /// `STATUS=line`: shown by `systemctl status`.
  @discardableResult
  public func status(_ line: String) -> Bool {
    send(["STATUS": line])
  }

  /// `WATCHDOG=1`: the event loop is alive.
  @discardableResult
  public func watchdog() -> Bool {
    send(["WATCHDOG": "1"])
  }

  static func oneLine(_ value: String) -> String {
    value.split(whereSeparator: \.isNewline).joined(separator: " ")
  }

  static func monotonicMicroseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
  }

  /// One datagram to a path or (leading `@`) abstract socket; the address length counts exactly the name's bytes
  /// (plus the terminating NUL for a path, none for an abstract name).
  static func sendDatagram(_ payload: [UInt8], to socketPath: String) -> Bool {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var name = Array(socketPath.utf8)
    let abstract = name.first == UInt8(ascii: "@")
    if abstract { name[0] = 0 }
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard !name.isEmpty, name.count < capacity || (abstract && name.count <= capacity) else { return false }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
      raw.copyBytes(from: name)
      if name.count < raw.count { raw[name.count] = 0 }
    }
    let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
    let length = socklen_t(pathOffset + name.count + (abstract ? 0 : 1))
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    let sent = payload.withUnsafeBytes { bytes in
      withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
          sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), socketAddress, length)
        }
      }
    }
    return sent == payload.count
  }
}
