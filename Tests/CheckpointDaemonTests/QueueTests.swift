import Foundation
import Testing

@testable import CheckpointDaemon

@Suite struct QueueTests {
  @Test(arguments: [1, 2, 3])
  func boundsConversionsAtOnce(workers: Int) {
    let queue = ConversionQueue(workers: workers)
    let counters = Locked((now: 0, peak: 0, done: 0))
    for index in 0..<8 {
      #expect(
        queue.enqueue("job-\(index)") { _ in
          counters.withLock {
            $0.now += 1
            $0.peak = max($0.peak, $0.now)
          }
          Thread.sleep(forTimeInterval: 0.05)
          counters.withLock {
            $0.now -= 1
            $0.done += 1
          }
        })
    }
    #expect(queue.waitUntilIdle(timeout: 10))
    #expect(counters.current.done == 8)
    #expect(counters.current.peak == workers)
    queue.shutdown(timeout: 1)
  }

  @Test func oneJobPerId() {
    let queue = ConversionQueue(workers: 1)
    let gate = DispatchSemaphore(value: 0)
    #expect(queue.enqueue("a") { _ in gate.wait() })
    #expect(!queue.enqueue("a") { _ in })
    gate.signal()
    #expect(queue.waitUntilIdle(timeout: 5))
    #expect(queue.enqueue("a") { _ in })
    #expect(queue.waitUntilIdle(timeout: 5))
    queue.shutdown(timeout: 1)
  }

  @Test func shutdownCancelsTheRunningJobAndDropsTheRest() {
    let queue = ConversionQueue(workers: 1)
    let ran = Locked([String]())
    queue.enqueue("long") { token in
      ran.withLock { $0.append("long") }
      while !token.isCancelled { Thread.sleep(forTimeInterval: 0.01) }
    }
    queue.enqueue("next") { _ in ran.withLock { $0.append("next") } }
    Thread.sleep(forTimeInterval: 0.1)
    #expect(queue.active == ["long"])
    #expect(queue.queued == ["next"])
    #expect(queue.shutdown(timeout: 5))
    #expect(ran.current == ["long"])
    #expect(!queue.enqueue("after") { _ in })
  }
}
