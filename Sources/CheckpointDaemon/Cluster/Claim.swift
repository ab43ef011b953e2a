import CheckpointConversion
import CheckpointFormats
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A claim this process holds: the file `<folder>/<prefix><generation>` it created with O_CREAT|O_EXCL.
///
/// The holder refreshes it every `ttl/4` (`refresh()` or `keepAlive`), checks `isCurrent()` just before it
/// commits anything (fencing: a takeover creates generation + 1 and removes ours), and `release()`s it once
/// its work is durable. A holder that finds itself superseded stops without committing.
public final class Claim: Sendable {
  /// The folder the claim covers.
  public let folder: String
  /// The claim file.
  public let path: String
  /// This claim's generation.
  public let generation: Int
  /// The name prefix of this kind of claim file (`ClaimBook.checkpointPrefix`, or a manifest lock's).
  public let prefix: String
  /// The record as first written.
  public let record: ClaimRecord
  private let state: Mutexed<State>

  private struct State {
    var fd: Int32
    var beat: Int
    var released = false
    /// The claim file's length as last written.
    var size: Int
  }

  init(folder: String, prefix: String, generation: Int, record: ClaimRecord, fd: Int32) {
    self.folder = folder
    self.prefix = prefix
    self.generation = generation
    self.path = ClaimBook.join(folder, prefix + String(generation))
    self.record = record
    self.state = Mutexed(State(fd: fd, beat: record.beat, size: record.encoded().count))
  }

  deinit {
    state.withLock { state in
      if state.fd >= 0 { close(state.fd) }
    }
  }

  /// Whether this claim is still the one in force: its file still holds our token and no generation + 1
  /// exists. Reads one small file and stats one name; cheap enough to ask before every commit.
  public func isCurrent() -> Bool {
    if state.withLock({ $0.released }) { return false }
    if access(ClaimBook.join(folder, prefix + String(generation + 1)), F_OK) == 0 { return false }
    guard let bytes = ClaimBook.readSmall(path), let current = ClaimRecord.decode(bytes) else { return false }
    return current.token == record.token
  }

  /// The record now in force in the folder when ours was superseded (nil if none could be read).
  public func supersededBy() -> ClaimRecord? {
    let generations = ClaimBook.generations(in: folder, prefix: prefix).filter { $0 != generation }
    guard let top = generations.max(),
      let bytes = ClaimBook.readSmall(ClaimBook.join(folder, prefix + String(top)))
    else { return nil }
    return ClaimRecord.decode(bytes)
  }

  /// Rewrites the file with the next heartbeat so observers see it change; throws `.cancelled` if the claim
  /// was taken over (then the holder must stop without committing).
  public func refresh() throws {
    guard isCurrent() else {
      let by = supersededBy().map { " by \($0.holder)" } ?? ""
      throw CheckpointError(.cancelled, path: folder, "claim taken over\(by); stopped without committing")
    }
    try state.withLock { state in
      guard !state.released, state.fd >= 0 else { return }
      state.beat += 1
      var next = record
      next.beat = state.beat
      let bytes = next.encoded()
      defer { state.size = bytes.count }
      let written = bytes.withUnsafeBytes { raw in pwrite(state.fd, raw.baseAddress, raw.count, 0) }
      // fdatasync, not fsync: the new beat must reach the server (NFS shows other clients only what was
      // committed), but the file's times need not; on ext4 an fsync of a metadata change waits for the journal
      // commit, which can wait behind the gigabytes a conversion is writing, and a heartbeat that waits seconds
      // lets observers with a short claim_ttl_seconds take a live claim over.
      // The beat only grows, so the record never gets shorter: truncate only if it ever did.
      let resized = bytes.count >= state.size || ftruncate(state.fd, off_t(bytes.count)) == 0
      guard written == bytes.count, resized, fdatasync(state.fd) == 0 else {
        let err = errno
        throw CheckpointError(
          .io, path: path, "cannot refresh the claim: \(String(cString: strerror(err)))", errno: err)
      }
    }
  }

  /// Refreshes every `interval` on `clock` until the task is cancelled or the claim is lost; returns the error
  /// that ended it (nil when cancelled). `onBeat` runs after each refresh (tests count them).
  public func keepAlive(
    clock: any Clock<Duration>, every interval: Duration, onBeat: @Sendable () -> Void = {}
  ) async -> CheckpointError? {
    while !Task.isCancelled {
      do {
        try await clock.sleep(for: interval)
      } catch {
        return nil
      }
      do {
        try refresh()
        onBeat()
      } catch let error as CheckpointError {
        return error
      } catch {
        return CheckpointError(.io, path: path, "\(error)")
      }
    }
    return nil
  }

  /// Removes the claim file if it is still ours, and closes it. Call once the work is durable (for the
  /// daemon: after the manifest record is fsynced). Safe to call twice.
  public func release() {
    let mine = isCurrent()
    state.withLock { state in
      guard !state.released else { return }
      state.released = true
      if mine { unlink(path) }
      if state.fd >= 0 { close(state.fd) }
      state.fd = -1
    }
    if mine { OutputFile.syncDirectory(folder) }
  }
}
