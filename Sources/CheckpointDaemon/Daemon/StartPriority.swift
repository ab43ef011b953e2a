import CheckpointConversion
import Logging

extension Daemon {
  /// Keeps every thread of the process at least as low as the process was started (`Nice=`,
  /// `CPUSchedulingPolicy=batch`, `IOSchedulingClass=idle` of the unit, or `nice`/`ionice`/`chrt`): libdispatch
  /// starts its worker threads at a nice value of its own, which would let conversions escape them. A conversion
  /// thread lowers itself as it starts (`ProcessPriority.beginWork`), and the keeper looks at the other threads
  /// only while conversions run and for 5 s after: an idle daemon has no wake-ups from it. A process started at
  /// the default priority starts no keeper (no thread, no wakeups); no thread is ever raised.
  /// Returns the setting kept, nil when none is.
  @discardableResult
  public static func keepStartPriority() -> ProcessPriority.Setting? {
    let started = ProcessPriority.started()
    guard started.isLowered else { return nil }
    // The threads there are now first, then those libdispatch starts later (every 200 ms).
    try? ProcessPriority.lowerProcess(to: started)
    ProcessPriority.keepLowered(to: started, whileWorking: true)
    Logger(label: "ckptd").info("started lowered: keeping every thread at \(started) or lower")
    return started
  }
}
