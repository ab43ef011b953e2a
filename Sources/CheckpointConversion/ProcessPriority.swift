import CLinux
import CheckpointFormats
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Low CPU and I/O priority for one-shot conversions beside a training job (`ckptd convert --nice`); the daemon
/// gets the same from its systemd unit (`Nice=`, `CPUSchedulingPolicy=batch`, `IOSchedulingClass=idle`).
///
/// On Linux each of these is a property of a thread: threads created later inherit it from their creator, so
/// `lowerProcess` applies it to every thread the process has (`/proc/self/task`).
public enum ProcessPriority {
  /// The nice value `--nice` sets (as the unit's `Nice=`).
  public static let niceValue: Int32 = 10
  /// `IOPRIO_CLASS_IDLE`: the disk serves this thread only when nobody else wants it.
  public static let idleClass: Int32 = 3

  /// What a thread runs with now.
  public struct Setting: Sendable, Equatable {
    /// The I/O scheduling class (0 none, 1 realtime, 2 best effort, 3 idle).
    public var ioClass: Int32
    /// The nice value.
    public var nice: Int32

    public init(ioClass: Int32, nice: Int32) {
      self.ioClass = ioClass
      self.nice = nice
    }
  }

  /// Idle I/O class, nice `niceValue` and `SCHED_BATCH` for every thread of this process.
  public static func lowerProcess() throws {
    let tasks = FileSystem.directoryEntries("/proc/self/task").compactMap { Int32($0) }
    for thread in tasks.isEmpty ? [Int32(0)] : tasks { try lower(thread: thread) }
  }

  /// Lowers, every `interval`, any thread of the process that is not lowered yet (threads started later by
  /// libdispatch get a nice value of their own, for their QoS, instead of inheriting ours), on a thread of its
  /// own that lives as long as the process. A lowered thread is left alone, so this costs one listing of
  /// /proc/self/task and one read per thread each time.
  public static func keepLowered(every interval: Duration = .milliseconds(200)) {
    let nanoseconds = interval.components.seconds * 1_000_000_000 + interval.components.attoseconds / 1_000_000_000
    let thread = Thread {
      while true {
        var pause = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var left = timespec()
        while nanosleep(&pause, &left) != 0 && errno == EINTR { pause = left }
        for task in FileSystem.directoryEntries("/proc/self/task").compactMap({ Int32($0) }) {
          if current(thread: task) != Setting(ioClass: idleClass, nice: niceValue) { try? lower(thread: task) }
        }
      }
    }
    thread.name = "ckptd-nice"
    thread.start()
  }

  /// Idle I/O class, nice `niceValue` and `SCHED_BATCH` for one thread (0: the calling thread).
  public static func lower(thread: Int32 = 0) throws {
    let label = "thread \(thread == 0 ? ckptd_gettid() : thread)"
    if ckptd_ioprio_set_thread(thread, idleClass, 0) != 0 {
      let err = errno
      throw CheckpointError(
        .io, path: label, "cannot set the idle I/O class: \(String(cString: strerror(err)))", errno: err)
    }
    // Lowering one's own priority needs no privilege; a thread already nicer keeps its value.
    if ckptd_get_nice_thread(thread) < niceValue, ckptd_set_nice_thread(thread, niceValue) != 0 {
      let err = errno
      throw CheckpointError(
        .io, path: label, "cannot set nice \(niceValue): \(String(cString: strerror(err)))", errno: err)
    }
    if ckptd_set_batch_scheduling(thread) != 0 {
      let err = errno
      throw CheckpointError(.io, path: label, "cannot set SCHED_BATCH: \(String(cString: strerror(err)))", errno: err)
    }
  }

  /// The I/O class and nice value of a thread (0: the calling thread), read back from the kernel.
  public static func current(thread: Int32 = 0) -> Setting {
    Setting(ioClass: ckptd_ioprio_get_thread(thread) >> 13, nice: ckptd_get_nice_thread(thread))
  }
}
