import CInotifyTools
import CheckpointFormats
import Dispatch
import Foundation
import Synchronization
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// The one owner of libinotifytools in the process.
///
/// libinotifytools is process-global and not thread-safe, so a single dedicated thread makes every call
/// into it (from `inotifytools_initialize` on). Other code talks to it through a request list and a wake-up
/// pipe; events are copied into `InotifyEvent` values and handed to the client that owns the watch
/// descriptor. The map from watch descriptor to path is our own: the library's path table goes stale on
/// deletes and renames, and never shrinks, so watches are added and removed with the kernel calls and the
/// library only reads events (it needs no table for that). The thread sleeps in `poll(2)` without a timeout:
/// an idle engine never wakes.
final class InotifyEngine: Sendable {
  /// The process-wide engine, started on first use.
  static let shared: Result<InotifyEngine, CheckpointError> = {
    do {
      return .success(try InotifyEngine(initialize: { inotifytools_initialize() != 0 }))
    } catch let error as CheckpointError {
      return .failure(error)
    } catch {
      return .failure(CheckpointError(.io, path: "inotify", "\(error)"))
    }
  }()

  struct Watch: Sendable {
    var path: String
    var mask: UInt32
    var client: UInt64
  }

  /// Where a client's messages go.
  struct Sink: Sendable {
    var deliver: @Sendable (WatcherMessage) -> Void
    var finish: @Sendable () -> Void
  }

  private enum Request: Sendable {
    case add(path: String, mask: UInt32, client: UInt64, reply: Reply<Int32>)
    case remove(wd: Int32, reply: Reply<Void>)
    case dropClient(UInt64)
    case pause(seconds: Double, reply: Reply<Void>)
    case libraryWatchCount(reply: Reply<Int>)
  }

  /// Counters for the status file.
  struct Figures: Sendable {
    var watches = 0
    var overflows = 0
    var unknownWatches = 0
  }

  private struct State {
    var watches: [Int32: Watch] = [:]
    var clients: [UInt64: Sink] = [:]
    var removed: Set<Int32> = []
    var figures = Figures()
  }

  private let requests = Mutexed<[Request]>([])
  private let state = Mutexed(State())
  private let nextClient = Atomic<UInt64>(1)
  private let wakeRead: FileDescriptor
  private let wakeWrite: FileDescriptor
  /// The inotify descriptor found in /proc/self/fd after initialisation (-1 if not found). Set once, before
  /// the owner thread reads it: never closed or replaced while the engine lives.
  let inotifyFd: Int32

  /// Starts the owner thread, which initialises the library with `initialize` (tests make it fail).
  /// `onPipe` sees the wake-up pipe's descriptors (tests check that a failed start closes them).
  init(
    initialize: @escaping @Sendable () -> Bool,
    onPipe: (@Sendable (FileDescriptor, FileDescriptor) -> Void)? = nil
  ) throws {
    let pipe: (readEnd: FileDescriptor, writeEnd: FileDescriptor)
    do {
      pipe = try FileDescriptor.pipe()
    } catch {
      throw DaemonFile.wrap(error, path: "inotify", "cannot create the wake-up pipe")
    }
    onPipe?(pipe.readEnd, pipe.writeEnd)
    for fd in [pipe.readEnd, pipe.writeEnd] {
      _ = fcntl(fd.rawValue, F_SETFD, FD_CLOEXEC)
      _ = fcntl(fd.rawValue, F_SETFL, fcntl(fd.rawValue, F_GETFL) | O_NONBLOCK)
    }
    let started = Reply<Int32>()
    let engine = Reply<InotifyEngine>()
    let thread = Thread {
      let before = Self.inotifyDescriptors()
      guard initialize() else {
        started.finish(.failure(Self.libraryError("cannot initialise inotify")))
        return
      }
      let fd = Self.inotifyDescriptors().subtracting(before).min() ?? -1
      if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
      started.finish(.success(fd))
      // Runs only once the engine is complete: nothing it reads changes afterwards.
      guard let engine = try? engine.wait() else { return }
      engine.loop()
    }
    thread.name = "ckptd-inotify"
    thread.start()
    do {
      inotifyFd = try started.wait()
    } catch {
      // Nothing else holds the pipe: close both ends, once.
      try? pipe.readEnd.close()
      try? pipe.writeEnd.close()
      throw error
    }
    wakeRead = pipe.readEnd
    wakeWrite = pipe.writeEnd
    engine.finish(.success(self))
  }

  // MARK: Client API (any thread)

  func register(_ sink: Sink) -> UInt64 {
    let id = nextClient.wrappingAdd(1, ordering: .relaxed).oldValue
    state.withLock { $0.clients[id] = sink }
    return id
  }

  func unregister(_ client: UInt64) {
    submit(.dropClient(client))
  }

  func addWatch(path: String, mask: UInt32, client: UInt64) throws -> Int32 {
    let reply = Reply<Int32>()
    submit(.add(path: path, mask: mask, client: client, reply: reply))
    return try reply.wait()
  }

  func removeWatch(wd: Int32) {
    let reply = Reply<Void>()
    submit(.remove(wd: wd, reply: reply))
    _ = try? reply.wait()
  }

  /// Stops reading events for `seconds` so that the kernel queue can overflow (tests); returns once the
  /// thread has taken the request.
  func pauseReading(seconds: Double) {
    let reply = Reply<Void>()
    submit(.pause(seconds: seconds, reply: reply))
    _ = try? reply.wait()
  }

  func watches(of client: UInt64) -> [Int32: String] {
    state.withLock { state in
      state.watches.filter { $0.value.client == client }.mapValues(\.path)
    }
  }

  var figures: Figures { state.withLock { $0.figures } }

  /// The watches in libinotifytools' own tables (asked on the owner thread): 0 whenever the inotify descriptor
  /// was found, since watches are then added and removed without the library.
  func libraryWatchCount() -> Int {
    let reply = Reply<Int>()
    submit(.libraryWatchCount(reply: reply))
    return (try? reply.wait()) ?? -1
  }

  private func submit(_ request: Request) {
    requests.withLock { $0.append(request) }
    var byte: UInt8 = 1
    _ = Glibc.write(wakeWrite.rawValue, &byte, 1)
  }

  // MARK: Owner thread

  private func loop() {
    var pausedUntil = 0.0
    while true {
      processRequests(pausedUntil: &pausedUntil)
      let now = Date().timeIntervalSince1970
      var fds = [
        pollfd(fd: wakeRead.rawValue, events: Int16(POLLIN), revents: 0),
        pollfd(fd: inotifyFd, events: Int16(POLLIN), revents: 0),
      ]
      let paused = now < pausedUntil
      let count: nfds_t = paused || inotifyFd < 0 ? 1 : 2
      // Without a descriptor to poll (not found in /proc) events are read every second; otherwise the
      // thread sleeps until the kernel or a request wakes it.
      let timeout: Int32 = paused ? Int32(max(1, (pausedUntil - now) * 1000)) : (inotifyFd < 0 ? 1000 : -1)
      _ = poll(&fds, count, timeout)
      if fds[0].revents != 0 { drainWakePipe() }
      if paused { continue }
      if inotifyFd < 0 || fds[1].revents != 0 { drainEvents(pausedUntil: &pausedUntil) }
    }
  }

  private func drainWakePipe() {
    var buffer = [UInt8](repeating: 0, count: 256)
    while Glibc.read(wakeRead.rawValue, &buffer, buffer.count) > 0 {}
  }

  /// Reads until libinotifytools' buffer is empty: events it has already read from the kernel would
  /// otherwise sit there with nothing left to wake `poll`.
  private func drainEvents(pausedUntil: inout Double) {
    var handled = 0
    while let event = inotifytools_next_events(0, 1) {
      deliver(copy(event))
      handled += 1
      if handled % 256 == 0 { processRequests(pausedUntil: &pausedUntil) }
    }
  }

  private func copy(_ event: UnsafeMutablePointer<inotify_event>) -> (Int32, UInt32, UInt32, String) {
    var name = ""
    let length = Int(event.pointee.len)
    if length > 0 {
      var eventName: UnsafePointer<CChar>?
      var dirLength = 0
      _ = inotifytools_filename_from_event(event, &eventName, &dirLength)
      if let eventName {
        name = String(cString: eventName)
      } else {
        // The name follows the fixed header, NUL-padded to `len` bytes.
        let bytes = UnsafeRawBufferPointer(
          start: UnsafeRawPointer(event).advanced(by: MemoryLayout<inotify_event>.size), count: length)
        name = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
      }
    }
    return (event.pointee.wd, event.pointee.mask, event.pointee.cookie, name)
  }

  private func deliver(_ raw: (wd: Int32, mask: UInt32, cookie: UInt32, name: String)) {
    if raw.wd < 0 || raw.mask & WatchMask.overflow != 0 {
      let sinks = state.withLock { state -> [Sink] in
        state.figures.overflows += 1
        return Array(state.clients.values)
      }
      for sink in sinks { sink.deliver(.rescan(reason: "inotify queue overflow")) }
      return
    }
    let ignored = raw.mask & WatchMask.ignored != 0
    let routed = state.withLock { state -> (Watch, Sink?)? in
      guard let watch = state.watches[raw.wd] else {
        // Events still queued for a watch we removed ourselves are expected, not lost state.
        if state.removed.contains(raw.wd) {
          if ignored { state.removed.remove(raw.wd) }
          return (Watch(path: "", mask: 0, client: 0), nil)
        }
        if !ignored { state.figures.unknownWatches += 1 }
        return nil
      }
      if ignored {
        state.watches[raw.wd] = nil
        state.figures.watches = state.watches.count
      }
      return (watch, state.clients[watch.client])
    }
    guard let (watch, sink) = routed else {
      if !ignored {
        let sinks = state.withLock { Array($0.clients.values) }
        for sink in sinks { sink.deliver(.rescan(reason: "event on unknown watch \(raw.wd)")) }
      }
      return
    }
    let event = InotifyEvent(wd: raw.wd, mask: raw.mask, cookie: raw.cookie, name: raw.name, directory: watch.path)
    sink?.deliver(.event(event))
  }

  private func processRequests(pausedUntil: inout Double) {
    let pending = requests.withLock { list -> [Request] in
      defer { list.removeAll() }
      return list
    }
    for request in pending {
      switch request {
      case .add(let path, let mask, let client, let reply):
        do {
          reply.finish(.success(try add(path: path, mask: mask, client: client)))
        } catch {
          reply.finish(.failure(DaemonFile.wrap(error, path: path, "cannot watch")))
        }
      case .remove(let wd, let reply):
        remove(wd: wd)
        reply.finish(.success(()))
      case .dropClient(let client):
        let (sink, wds) = state.withLock { state -> (Sink?, [Int32]) in
          let sink = state.clients.removeValue(forKey: client)
          return (sink, state.watches.filter { $0.value.client == client }.map(\.key))
        }
        sink?.finish()
        for wd in wds { remove(wd: wd) }
      case .pause(let seconds, let reply):
        pausedUntil = Date().timeIntervalSince1970 + seconds
        reply.finish(.success(()))
      case .libraryWatchCount(let reply):
        reply.finish(.success(Int(inotifytools_get_num_watches())))
      }
    }
  }

  private func add(path: String, mask: UInt32, client: UInt64) throws -> Int32 {
    let wd: Int32
    if inotifyFd >= 0 {
      // Straight to the kernel: the library only reads events. Every watch it adds stays in its tables (a
      // watch struct, the path and two tree nodes, about 300 bytes) until it is removed through the library,
      // and nothing removes it when the kernel drops the watch (IN_IGNORED: the folder was deleted), nor the
      // copy a second add of the same path makes; with one watch per checkpoint folder, RSS grew with every
      // conversion (issue 14 item 5). Adding the same watch again is idempotent in the kernel and returns the
      // live descriptor.
      wd = inotify_add_watch(inotifyFd, path, mask)
      guard wd >= 0 else { throw Self.watchError(errno, path: path) }
    } else {
      // The descriptor was not found: the library adds the watch and is asked for its descriptor (its path
      // table maps a re-created path to a dead descriptor, watching-and-systemd.md 1.6, hence no fast path).
      guard inotifytools_watch_file(path, Int32(bitPattern: mask)) != 0 else {
        throw Self.libraryError("cannot watch", path: path)
      }
      wd = Self.libraryDescriptor(for: path)
      guard wd >= 0 else { throw Self.watchError(errno, path: path) }
    }
    state.withLock { state in
      state.watches[wd] = Watch(path: path, mask: mask, client: client)
      state.removed.remove(wd)
      state.figures.watches = state.watches.count
    }
    return wd
  }

  private func remove(wd: Int32) {
    let known = state.withLock { state -> Bool in
      guard state.watches.removeValue(forKey: wd) != nil else { return false }
      state.removed.insert(wd)
      state.figures.watches = state.watches.count
      return true
    }
    // Only watches the kernel still holds: after IN_IGNORED the entry is already gone from our map.
    guard known else { return }
    if inotifyFd >= 0 {
      _ = inotify_rm_watch(inotifyFd, wd)
    } else {
      // Added through the library: removed through it, which frees its entry.
      _ = inotifytools_remove_watch_by_wd(wd)
    }
  }

  private static func libraryDescriptor(for path: String) -> Int32 {
    var info = stat()
    let isDirectory = stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    let stored = isDirectory && !path.hasSuffix("/") ? path + "/" : path
    return inotifytools_wd_from_filename(stored)
  }

  private static func libraryError(_ what: String, path: String = "inotify") -> CheckpointError {
    watchError(inotifytools_error(), what, path: path)
  }

  private static func watchError(_ code: Int32, _ what: String = "cannot watch", path: String) -> CheckpointError {
    let reason = code > 0 ? String(cString: strerror(code)) : "unknown error \(code)"
    if code == ENOSPC {
      return CheckpointError(
        .limitExceeded, path: path, "\(what): inotify watch limit reached (raise fs.inotify.max_user_watches)",
        errno: code)
    }
    return CheckpointError(.io, path: path, "\(what): \(reason)", errno: code)
  }

  /// Descriptors in /proc/self/fd that are inotify instances.
  static func inotifyDescriptors() -> Set<Int32> {
    var result: Set<Int32> = []
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    for entry in entries {
      guard let fd = Int32(entry) else { continue }
      if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + entry),
        target == "anon_inode:inotify"
      {
        result.insert(fd)
      }
    }
    return result
  }
}

/// A one-shot reply slot a caller blocks on until another thread fills it.
final class Reply<Value: Sendable>: Sendable {
  private let semaphore = DispatchSemaphore(value: 0)
  private let result = Mutexed<Result<Value, CheckpointError>?>(nil)

  func finish(_ value: Result<Value, CheckpointError>) {
    result.withLock { $0 = value }
    semaphore.signal()
  }

  func wait() throws -> Value {
    semaphore.wait()
    guard let value = result.withLock({ $0 }) else {
      throw CheckpointError(.io, path: "inotify", "no reply from the watcher thread")
    }
    return try value.get()
  }
}
