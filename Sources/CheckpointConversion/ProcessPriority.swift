import CLinux
import CheckpointFormats
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Low CPU and I/O priority for one-shot conversions beside a training job (`ckptd convert --nice`); the daemon
/// gets the same from its systemd unit (`Nice=`, `CPUSchedulingPolicy=batch`, `IOSchedulingClass=idle`), and
/// `ckptd run` keeps every thread at least as low as it was started (`keepLowered(to: started())`).
///
/// On Linux each of these is a property of a thread: threads created later inherit it from their creator, so
/// `lowerProcess` applies it to every thread the process has (`/proc/self/task`).
public enum ProcessPriority {
  /// The nice value `--nice` sets (as the unit's `Nice=`).
  public static let niceValue: Int32 = 10
  /// `IOPRIO_CLASS_IDLE`: the disk serves this thread only when nobody else wants it.
  public static let idleClass: Int32 = 3
  /// `SCHED_BATCH`: the scheduler treats the thread as CPU-bound and preempts others less for it.
  public static let batchPolicy: Int32 = 3
  /// `SCHED_IDLE`: the thread runs only when nothing else wants the CPU (lower than `SCHED_BATCH`).
  public static let idlePolicy: Int32 = 5

  /// What a thread runs with now, or what the keeper holds the threads to (then the I/O class counts only when
  /// it is idle, and the policy only when it is `SCHED_BATCH` or `SCHED_IDLE`).
  public struct Setting: Sendable, Equatable, CustomStringConvertible {
    /// The I/O scheduling class (0 none, 1 realtime, 2 best effort, 3 idle).
    public var ioClass: Int32
    /// The nice value.
    public var nice: Int32
    /// The scheduling policy (0 `SCHED_OTHER`, 3 `SCHED_BATCH`, 5 `SCHED_IDLE`; -1 unknown).
    public var policy: Int32

    public init(ioClass: Int32, nice: Int32, policy: Int32 = 0) {
      self.ioClass = ioClass
      self.nice = nice
      self.policy = policy
    }

    /// Below the default on some count: nice above 0, the idle I/O class, or `SCHED_BATCH`/`SCHED_IDLE`.
    public var isLowered: Bool {
      nice > 0 || ioClass == ProcessPriority.idleClass || ProcessPriority.policyRank(policy) > 0
    }

    /// "nice 10, idle I/O class, SCHED_BATCH": what a keeper of this target holds the threads to.
    public var description: String {
      var parts = ["nice \(nice)"]
      if ioClass == ProcessPriority.idleClass { parts.append("idle I/O class") }
      if policy == ProcessPriority.batchPolicy { parts.append("SCHED_BATCH") }
      if policy == ProcessPriority.idlePolicy { parts.append("SCHED_IDLE") }
      return parts.joined(separator: ", ")
    }
  }

  /// What `ckptd convert --nice` sets: idle I/O class, nice `niceValue` and `SCHED_BATCH`.
  public static let niceTarget = Setting(ioClass: idleClass, nice: niceValue, policy: batchPolicy)

  /// How low a scheduling policy is: 0 for `SCHED_OTHER` (and the real-time ones), 1 batch, 2 idle.
  static func policyRank(_ policy: Int32) -> Int {
    policy == idlePolicy ? 2 : policy == batchPolicy ? 1 : 0
  }

  /// The setting the process was started with: that of its main thread (whose id is the process id). Read it
  /// before anything raised it: libdispatch gives threads it starts a nice value of its own.
  public static func started() -> Setting { current(thread: getpid()) }

  /// `target` (default: what `--nice` sets) for every thread of this process.
  public static func lowerProcess(to target: Setting = niceTarget) throws {
    let tasks = threads()
    for thread in tasks.isEmpty ? [Int32(0)] : tasks { try lower(thread: thread, to: target) }
  }

  /// The ids of this process's threads now (/proc/self/task).
  static func threads() -> [Int32] {
    FileSystem.directoryEntries("/proc/self/task").compactMap { Int32($0) }
  }

  /// Lowers to `target` (default: what `--nice` sets), every `interval`, any thread of the process that is not
  /// at least that low yet (threads started later by libdispatch get a nice value of their own, for their QoS,
  /// instead of inheriting ours), on a thread of its own that lives as long as the process. A thread low enough
  /// is left alone, so this costs one listing of /proc/self/task and three reads per thread each time. No
  /// thread is ever raised.
  ///
  /// With `whileWorking` (the daemon), the keeper looks only while work marked by `beginWork`/`endWork` runs and
  /// for `grace` after it, and otherwise sleeps without waking: an idle daemon has no wake-ups of its own. A thread
  /// that calls `beginWork` is lowered at once, so the heavy work never waits for the keeper's next look.
  public static func keepLowered(
    to target: Setting = niceTarget, every interval: Duration = .milliseconds(200), whileWorking: Bool = false,
    grace: Duration = .seconds(5)
  ) {
    keeper.withLock { $0.target = target }
    let nanoseconds = interval.nanosecondCount
    let thread = Thread {
      // Named from inside: Foundation on Linux names the kernel thread only when the thread names itself.
      Thread.current.name = "ckptd-nice"
      while true {
        if whileWorking {
          let now = ContinuousClock.now
          let idle = keeper.withLock { state in
            let resting = state.working == 0 && state.lastWork.map { now - $0 >= grace } ?? true
            if resting { state.sleeping = true }
            return resting
          }
          if idle {
            keeperWake.wait()
            continue
          }
        }
        var pause = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var left = timespec()
        while nanosleep(&pause, &left) != 0 && errno == EINTR { pause = left }
        for task in threads() { try? lower(thread: task, to: target) }
      }
    }
    thread.start()
  }

  /// Marks the start of heavy work (a conversion) on the calling thread: lowers it to what the keeper holds the
  /// threads to, if a keeper runs, and wakes a keeper that sleeps while nothing works.
  public static func beginWork() {
    let (target, wake) = keeper.withLock { state in
      state.working += 1
      defer { state.sleeping = false }
      return (state.target, state.sleeping)
    }
    if let target { try? lower(to: target) }
    if wake { keeperWake.signal() }
  }

  /// Marks the end of work begun with `beginWork`.
  public static func endWork() {
    let now = ContinuousClock.now
    keeper.withLock { state in
      state.working -= 1
      state.lastWork = now
    }
  }

  /// What the keeper holds the threads to, how much work runs, and whether the keeper sleeps on `keeperWake`.
  struct KeeperState {
    var target: Setting?
    var working = 0
    var lastWork: ContinuousClock.Instant?
    var sleeping = false
  }

  private static let keeper = Mutex(KeeperState())
  private static let keeperWake = DispatchSemaphore(value: 0)

  /// `target` (default: what `--nice` sets) for one thread (0: the calling thread), on each count where the
  /// thread is not that low already: a thread already lower keeps its value.
  public static func lower(thread: Int32 = 0, to target: Setting = niceTarget) throws {
    // Named only for an error: the keeper calls this for every thread every 200 ms.
    var label: String { "thread \(thread == 0 ? ckptd_gettid() : thread)" }
    let now = current(thread: thread)
    if target.ioClass == idleClass, now.ioClass != idleClass, ckptd_ioprio_set_thread(thread, idleClass, 0) != 0 {
      let err = errno
      throw CheckpointError(
        .io, path: label, "cannot set the idle I/O class: \(String(cString: strerror(err)))", errno: err)
    }
    // Lowering one's own priority needs no privilege; a thread already nicer keeps its value.
    if now.nice < target.nice, ckptd_set_nice_thread(thread, target.nice) != 0 {
      let err = errno
      throw CheckpointError(
        .io, path: label, "cannot set nice \(target.nice): \(String(cString: strerror(err)))", errno: err)
    }
    if policyRank(now.policy) < policyRank(target.policy), ckptd_set_scheduler_thread(thread, target.policy) != 0 {
      let err = errno
      let name = target.policy == idlePolicy ? "SCHED_IDLE" : "SCHED_BATCH"
      throw CheckpointError(.io, path: label, "cannot set \(name): \(String(cString: strerror(err)))", errno: err)
    }
  }

  /// The I/O class, nice value and scheduling policy of a thread (0: the calling thread), read from the kernel.
  public static func current(thread: Int32 = 0) -> Setting {
    Setting(
      ioClass: ckptd_ioprio_get_thread(thread) >> 13, nice: ckptd_get_nice_thread(thread),
      policy: ckptd_get_scheduler_thread(thread))
  }
}
