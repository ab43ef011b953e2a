import CheckpointConversion
import CheckpointFormats
import Foundation
import Synchronization
import Testing

/// `ckptd convert --nice`: idle I/O class, nice 10 and SCHED_BATCH, read back from the kernel. Tried on a thread
/// of its own (on Linux these are per-thread), so the test runner's other threads keep their priority.
@Suite struct ProcessPriorityTests {
  /// What one thread saw: its /proc/thread-self/stat fields before and after, and `ionice -p` of it.
  struct Observation: Sendable {
    var before: ProcessPriority.Setting
    var after: ProcessPriority.Setting
    var statNice: Int?
    var statPolicy: Int?
    var ionice: String
  }

  /// Fields of /proc/thread-self/stat after the command name (which may hold spaces): index 0 is field 3.
  static func statFields() -> [String] {
    guard let text = try? String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8),
      let close = text.lastIndex(of: ")")
    else { return [] }
    return text[text.index(after: close)...].split(separator: " ").map(String.init)
  }

  static func ionice(of thread: String) -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/ionice")
    process.arguments = ["-p", thread]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    guard (try? process.run()) != nil else { return "" }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
  }

  @Test func lowersAThreadAndTheKernelSaysSo() throws {
    let result = Mutexed<Result<Observation, CheckpointErrorBox>?>(nil)
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
      defer { done.signal() }
      let before = ProcessPriority.current()
      do {
        try ProcessPriority.lower()
      } catch {
        result.withLock { $0 = .failure(CheckpointErrorBox(text: "\(error)")) }
        return
      }
      let fields = Self.statFields()
      // Field 19 is nice, field 41 the scheduling policy (3 = SCHED_BATCH); the thread id is field 1.
      let tid = (try? String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8))?.split(separator: " ").first
      let observation = Observation(
        before: before, after: ProcessPriority.current(),
        statNice: fields.count > 16 ? Int(fields[16]) : nil, statPolicy: fields.count > 38 ? Int(fields[38]) : nil,
        ionice: tid.map { Self.ionice(of: String($0)) } ?? "")
      result.withLock { $0 = .success(observation) }
    }
    thread.start()
    done.wait()
    let outcome = try #require(result.withLock { $0 })
    let seen = try outcome.get()
    #expect(seen.before.ioClass != ProcessPriority.idleClass)
    #expect(seen.after == ProcessPriority.niceTarget)
    #expect(seen.after.policy == ProcessPriority.batchPolicy)
    #expect(seen.statNice == Int(ProcessPriority.niceValue))
    #expect(seen.statPolicy == 3)
    #expect(seen.ionice == "idle")
    // Only that thread changed: this one still runs at the default I/O class.
    #expect(ProcessPriority.current().ioClass != ProcessPriority.idleClass)
  }

  /// An error carried out of the thread as text.
  struct CheckpointErrorBox: Error, Sendable {
    var text: String
  }
}
