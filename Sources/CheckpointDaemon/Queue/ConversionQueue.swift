import Foundation

/// Runs conversions, at most `workers` at once, each on a dedicated thread (blocking file I/O stays off
/// the cooperative pool). Jobs are identified by the checkpoint folder: one job per folder queued or
/// running at any time.
public final class ConversionQueue: @unchecked Sendable {
  /// A job body; it should return soon after its token is cancelled.
  public typealias Body = @Sendable (CancelToken) -> Void

  private struct Job {
    var id: String
    var body: Body
  }

  private let condition = NSCondition()
  private var pending: [Job] = []
  private var running: [String: CancelToken] = [:]
  private var targetWorkers: Int
  private var liveWorkers = 0
  private var stopped = false

  /// Starts `workers` worker threads (at least one).
  public init(workers: Int) {
    targetWorkers = max(1, workers)
    condition.lock()
    spawnMissingWorkers()
    condition.unlock()
  }

  /// Changes the number of conversions at once; extra workers leave after their current job.
  public func setWorkers(_ workers: Int) {
    condition.lock()
    targetWorkers = max(1, workers)
    spawnMissingWorkers()
    condition.broadcast()
    condition.unlock()
  }

  /// Queues `body` under `id`; false if a job with this id is already queued or running, or the queue
  /// has been shut down.
  @discardableResult
  public func enqueue(_ id: String, _ body: @escaping Body) -> Bool {
    condition.lock()
    defer { condition.unlock() }
    guard !stopped, running[id] == nil, !pending.contains(where: { $0.id == id }) else { return false }
    pending.append(Job(id: id, body: body))
    condition.signal()
    return true
  }

  /// True when a job with `id` is queued or running.
  public func contains(_ id: String) -> Bool {
    condition.lock()
    defer { condition.unlock() }
    return running[id] != nil || pending.contains { $0.id == id }
  }

  /// Ids waiting for a worker, in order.
  public var queued: [String] {
    condition.lock()
    defer { condition.unlock() }
    return pending.map(\.id)
  }

  /// Ids being converted now.
  public var active: [String] {
    condition.lock()
    defer { condition.unlock() }
    return running.keys.sorted()
  }

  /// Drops `id` from the queue, or cancels it if it is running.
  public func cancel(_ id: String) {
    condition.lock()
    pending.removeAll { $0.id == id }
    running[id]?.cancel()
    condition.unlock()
  }

  /// Stops taking jobs, drops the queued ones, cancels the running ones and waits up to `timeout`
  /// seconds for them to return; true when they all did.
  @discardableResult
  public func shutdown(timeout: Double) -> Bool {
    condition.lock()
    defer { condition.unlock() }
    stopped = true
    pending.removeAll()
    for token in running.values { token.cancel() }
    condition.broadcast()
    let deadline = Date(timeIntervalSinceNow: timeout)
    while !running.isEmpty {
      if !condition.wait(until: deadline) { break }
    }
    return running.isEmpty
  }

  /// Waits until nothing is queued or running; true if that happened within `timeout` seconds.
  public func waitUntilIdle(timeout: Double) -> Bool {
    condition.lock()
    defer { condition.unlock() }
    let deadline = Date(timeIntervalSinceNow: timeout)
    while !(pending.isEmpty && running.isEmpty) {
      if !condition.wait(until: deadline) { break }
    }
    return pending.isEmpty && running.isEmpty
  }

  /// Called with the lock held.
  private func spawnMissingWorkers() {
    while liveWorkers < targetWorkers {
      liveWorkers += 1
      let thread = Thread { [self] in work() }
      thread.name = "ckptd-worker-\(liveWorkers)"
      thread.start()
    }
  }

  private func work() {
    condition.lock()
    while true {
      while pending.isEmpty && !stopped && liveWorkers <= targetWorkers {
        condition.wait()
      }
      if stopped || liveWorkers > targetWorkers {
        liveWorkers -= 1
        condition.broadcast()
        condition.unlock()
        return
      }
      let job = pending.removeFirst()
      let token = CancelToken()
      running[job.id] = token
      condition.unlock()
      job.body(token)
      condition.lock()
      running[job.id] = nil
      condition.broadcast()
    }
  }
}
