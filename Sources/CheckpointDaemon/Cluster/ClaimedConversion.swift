import CheckpointConversion
import CheckpointFormats
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Runs one piece of work under a checkpoint folder's claim, as `ckptd convert` does (the daemon does the same
/// steps on its actor, see `Daemon+Claims`): claim (or wait for) the folder, remove leftover temporaries, keep
/// the claim fresh every `ttl/4` while the work runs on its own thread, stop the work when the claim is lost
/// (fencing: `isCancelled` re-reads the claim at most every 250 ms, and `stillOwned`, asked right before the
/// commit, always does), release the claim afterwards.
public enum ClaimedConversion {
  /// What happened.
  public enum Outcome<T: Sendable>: Sendable {
    /// The work ran under our claim.
    case ran(T, removedTemporaries: [String])
    /// We waited for another holder, who finished the work meanwhile: nothing done.
    case finishedByOther(holder: String)
  }

  /// node_name and claim_ttl_seconds from the main config file (`$CKPTD_CONFIG` or /etc/ckptd/ckptd.toml) when
  /// it exists, else the defaults (host name, 120 s). A broken main file is an error.
  public static func clusterSettings() throws -> (identity: ClaimIdentity, ttl: Duration) {
    let path = ConfigLoader.defaultPath()
    var config = DaemonConfig(configFile: path)
    if access(path, F_OK) == 0 {
      config = try ConfigLoader.loadMain(path: path)
    }
    return (ClaimIdentity.current(node: config.nodeName), config.claimTTL)
  }

  /// Whether every output `Converter.convert(path:options:)` would write already exists (what a holder we
  /// waited for leaves behind when it finished).
  public static func outputsExist(path: String, options: ConversionOptions) -> Bool {
    guard let plan = try? ConversionPlan.make(path: path, options: options) else { return false }
    if plan.outcome != .converted { return true }
    return !plan.outputPaths.isEmpty && plan.outputPaths.allSatisfy { access($0, F_OK) == 0 }
  }

  /// Claims `folder` and runs `work` under the claim. With `wait == false` a live claim held by someone else is
  /// a `.claimed` error "claimed by node N pid P"; with `wait == true` this waits (re-reading every
  /// `min(ttl/4, 1 s)`) until the claim is released or goes stale, then finds the work done (`isDone`) or does
  /// it. `sweep`: remove leftover temporaries in `folder` first (only where the outputs go into `folder`).
  public static func run<T: Sendable>(
    folder: String, book: inout ClaimBook, clock: any Clock<Duration>, wait: Bool, sweep: Bool,
    interrupted: @escaping @Sendable () -> Bool, isDone: () -> Bool,
    work:
      @escaping @Sendable (
        _ isCancelled: @escaping @Sendable () -> Bool, _ stillOwned: @escaping @Sendable () -> Bool
      ) throws -> T
  ) async throws -> Outcome<T> {
    var waitedFor: ClaimHolder?
    let claim: Claim
    var times = FolderTimes(folder)
    while true {
      // The folder's times before our claim file comes and goes (the Trainer rotates checkpoints by mtime).
      times = FolderTimes(folder)
      let outcome: ClaimOutcome
      do {
        outcome = try book.tryAcquire(folder: folder)
      } catch let error as CheckpointError where [EACCES, EPERM, EROFS].contains(error.errno ?? 0) {
        // A folder we may not write to (a read-only source converted with --out): nobody can claim it, and
        // the outputs go elsewhere; the conversion reports its own errors as before.
        return .ran(try await onThread { try work(interrupted, { true }) }, removedTemporaries: [])
      }
      switch outcome {
      case .acquired(let acquired, _):
        claim = acquired
      case .held(let holder):
        guard wait else {
          throw CheckpointError(
            .claimed, path: folder,
            "claimed by \(holder.description) (another ckptd is converting it; --wait waits for it)")
        }
        waitedFor = holder
        if interrupted() { throw CheckpointError(.cancelled, path: folder, "cancelled while waiting for the claim") }
        do {
          try await clock.sleep(for: min(book.ttl / 4, .seconds(1)))
        } catch {
          throw CheckpointError(.cancelled, path: folder, "cancelled while waiting for the claim")
        }
        continue
      }
      break
    }
    let held = HeldClaim(claim, times: times)
    defer { held.release() }
    if let waitedFor, isDone() {
      return .finishedByOther(holder: waitedFor.description)
    }
    let removed = sweep ? TemporarySweep.removeLeftovers(in: folder, under: claim) : []
    let lost = Mutexed<CheckpointError?>(nil)
    let interval = book.ttl / 4
    let keeper = Task {
      if let error = await claim.keepAlive(clock: clock, every: interval) {
        lost.withLock { $0 = error }
      }
    }
    defer { keeper.cancel() }
    let fence = ClaimFence(claim, clock: clock)
    let isCancelled: @Sendable () -> Bool = {
      interrupted() || lost.withLock { $0 != nil } || fence.isLost()
    }
    do {
      let value = try await onThread { try work(isCancelled, { fence.isCurrent() }) }
      return .ran(value, removedTemporaries: removed)
    } catch let error as CheckpointError where error.code == .cancelled && !interrupted() {
      let by = claim.supersededBy().map { " by \($0.holder)" } ?? ""
      throw CheckpointError(.claimed, path: folder, "claim taken over\(by); stopped without committing")
    }
  }

  /// Runs blocking work on a thread of its own, so that the claim's refresh task keeps its turn on the
  /// cooperative pool however few cores there are.
  static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
      let thread = Thread {
        // At the priority the daemon was started with, from the first byte (see `Daemon.keepStartPriority`).
        ProcessPriority.beginWork()
        defer { ProcessPriority.endWork() }
        continuation.resume(with: Result { try body() })
      }
      thread.stackSize = 8 << 20
      thread.start()
    }
  }
}
