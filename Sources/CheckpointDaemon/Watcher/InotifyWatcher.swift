import CheckpointFormats

/// A handle on the process's inotify thread: its own watches and its own stream of events.
///
/// Every call into libinotifytools happens on one owner thread (`InotifyEngine`); this handle sends it
/// requests and receives copies of the events on the watches it added. Several handles may exist (tests
/// run in parallel); an overflow of the shared kernel queue is delivered to all of them as `.rescan`.
public final class InotifyWatcher: Sendable {
  private let engine: InotifyEngine
  private let client: UInt64
  /// Events on this handle's watches, and rescan requests (empty for a handle made with `init(deliver:)`).
  public let messages: AsyncStream<WatcherMessage>

  /// Starts (or joins) the inotify thread; messages arrive in `messages`.
  public init() throws {
    engine = try InotifyEngine.shared.get()
    let (stream, continuation) = AsyncStream<WatcherMessage>.makeStream(bufferingPolicy: .unbounded)
    messages = stream
    client = engine.register(
      InotifyEngine.Sink(deliver: { continuation.yield($0) }, finish: { continuation.finish() }))
  }

  /// Starts (or joins) the inotify thread; `deliver` is called on that thread with every message (it must
  /// only hand the message on, e.g. to a stream). `messages` stays empty.
  public init(deliver: @escaping @Sendable (WatcherMessage) -> Void) throws {
    engine = try InotifyEngine.shared.get()
    messages = AsyncStream { $0.finish() }
    client = engine.register(InotifyEngine.Sink(deliver: deliver, finish: {}))
  }

  deinit {
    engine.unregister(client)
  }

  /// Watches `path` (a directory) for `mask` events; returns the watch descriptor. A second call for a
  /// path already watched returns the same descriptor with the new mask.
  @discardableResult
  public func watch(_ path: String, mask: UInt32) throws -> Int32 {
    try engine.addWatch(path: path, mask: mask, client: client)
  }

  /// Removes a watch this handle added; a watch the kernel already dropped (IN_IGNORED) is left alone.
  public func unwatch(_ wd: Int32) {
    engine.removeWatch(wd: wd)
  }

  /// The live watches of this handle: descriptor to path.
  public var watches: [Int32: String] { engine.watches(of: client) }

  /// Process-wide figures: live watches, overflows, events on unknown descriptors.
  public var figures: (watches: Int, overflows: Int, unknownWatches: Int) {
    let figures = engine.figures
    return (figures.watches, figures.overflows, figures.unknownWatches)
  }

  /// Watches held in libinotifytools' own tables (process-wide; 0 unless the descriptor was not found).
  public var libraryWatchCount: Int { engine.libraryWatchCount() }

  /// The inotify descriptor (FD_CLOEXEC set), or -1 if it could not be found.
  public var descriptor: Int32 { engine.inotifyFd }

  /// Stops reading events for `seconds` so that the kernel queue can overflow (for tests).
  public func pauseReading(seconds: Double) {
    engine.pauseReading(seconds: seconds)
  }

  /// Reads events again after `pauseReading(seconds:)`.
  public func resumeReading() {
    engine.pauseReading(seconds: 0)
  }

  /// Ends the message stream and removes every watch of this handle.
  public func close() {
    engine.unregister(client)
  }
}
