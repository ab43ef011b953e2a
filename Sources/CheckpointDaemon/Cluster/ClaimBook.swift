import CheckpointFormats
import Foundation
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// Someone else's claim, as seen from here.
public struct ClaimHolder: Sendable, Equatable {
  /// The claim file.
  public var path: String
  /// Its generation.
  public var generation: Int
  /// What it says; nil while it is empty (being written) or unreadable.
  public var record: ClaimRecord?
  /// How long this observer has seen it unchanged, on its own monotonic clock.
  public var unchangedFor: Duration

  /// "node N pid P" (or "an unknown holder" while the file is being written).
  public var description: String { record?.holder ?? "an unknown holder" }
}

/// What `ClaimBook.tryAcquire` found.
public enum ClaimOutcome: Sendable {
  /// The claim is ours. `tookOver` is the stale claim it replaced, if any (its holder's temporaries are now
  /// ours to remove).
  case acquired(Claim, tookOver: ClaimHolder?)
  /// Another process holds a live claim (or won the race just now).
  case held(ClaimHolder)
}

/// Takes claims on folders, and remembers what it has seen of others' claims so that it can tell a stale one:
/// a claim is stale once this observer has seen it unchanged for `ttl` on its own monotonic clock (file times
/// and other nodes' clocks are never consulted), or at once when its holder is a dead process of this boot.
///
/// One book per instance (the daemon keeps it across polls); a value type, owned by its caller.
public struct ClaimBook: Sendable {
  /// Claim files of checkpoint folders: `.ckptd-claim.<generation>` (a dot name: scans skip it).
  public static let checkpointPrefix = ".ckptd-claim."

  public let identity: ClaimIdentity
  public let ttl: Duration
  /// The file-name prefix this book claims with.
  public let prefix: String
  private let stopwatch: Stopwatch
  private var seen: [String: Observation] = [:]

  struct Observation: Sendable {
    var bytes: [UInt8]
    var since: Duration
  }

  public init(
    identity: ClaimIdentity, ttl: Duration, clock: any Clock<Duration>, prefix: String = ClaimBook.checkpointPrefix
  ) {
    self.identity = identity
    self.ttl = ttl
    self.prefix = prefix
    self.stopwatch = Stopwatch(clock: clock)
  }

  /// Claims `folder`, taking over a stale claim; throws only when the claim file cannot be made at all
  /// (permissions, a read-only or full file system), naming the file.
  public mutating func tryAcquire(folder: String) throws -> ClaimOutcome {
    for _ in 0..<3 {
      let generations = ClaimBook.generations(in: folder, prefix: prefix)
      forgetVanished(in: folder, keeping: Set(generations))
      guard let top = generations.max() else {
        if let outcome = try create(folder: folder, generation: 1, replacing: nil) { return outcome }
        continue
      }
      let path = ClaimBook.join(folder, prefix + String(top))
      guard let bytes = ClaimBook.readSmall(path) else { continue }  // released meanwhile: look again
      let holder = observe(path: path, generation: top, bytes: bytes)
      let dead = holder.record.map { identity.holderIsDead($0) } ?? false
      guard dead || holder.unchangedFor >= ttl else { return .held(holder) }
      if let outcome = try create(folder: folder, generation: top + 1, replacing: holder) { return outcome }
    }
    // Claims kept appearing and vanishing under us: report what is there now as held.
    let generations = ClaimBook.generations(in: folder, prefix: prefix)
    let top = generations.max() ?? 1
    let path = ClaimBook.join(folder, prefix + String(top))
    return .held(observe(path: path, generation: top, bytes: ClaimBook.readSmall(path) ?? []))
  }

  /// Records one look at a claim file; returns the holder with how long it has been unchanged.
  mutating func observe(path: String, generation: Int, bytes: [UInt8]) -> ClaimHolder {
    let now = stopwatch.elapsed
    if let previous = seen[path], previous.bytes == bytes {
      return ClaimHolder(
        path: path, generation: generation, record: ClaimRecord.decode(bytes), unchangedFor: now - previous.since)
    }
    seen[path] = Observation(bytes: bytes, since: now)
    return ClaimHolder(path: path, generation: generation, record: ClaimRecord.decode(bytes), unchangedFor: .zero)
  }

  private mutating func forgetVanished(in folder: String, keeping generations: Set<Int>) {
    let base = ClaimBook.join(folder, prefix)
    for key in seen.keys where key.hasPrefix(base) {
      if let generation = Int(key.dropFirst(base.count)), generations.contains(generation) { continue }
      seen[key] = nil
    }
  }

  /// O_CREAT|O_EXCL of generation `generation`. nil: the name vanished before it could be read (look again).
  private mutating func create(folder: String, generation: Int, replacing stale: ClaimHolder?) throws -> ClaimOutcome? {
    let path = ClaimBook.join(folder, prefix + String(generation))
    let record = ClaimRecord(
      node: identity.node, pid: identity.pid, bootID: identity.bootID, pidStart: identity.pidStart,
      start: ISOTime.string(Date()), generation: generation, beat: 0, token: ClaimBook.newToken())
    // The claim appears with its content at once: written under a private name (O_CREAT|O_EXCL), then
    // hard-linked to the claim name, which fails with EEXIST like O_EXCL does. A holder killed half way leaves
    // a pending file (swept later), never an empty claim nobody can judge.
    let pending = path + "." + record.token
    let bytes = record.encoded()
    let written = ClaimBook.writeNew(pending, bytes)
    guard written == 0 else {
      throw CheckpointError(
        .io, path: path, "cannot create the claim file: \(String(cString: strerror(written)))", errno: written)
    }
    var result = link(pending, path)
    var err = result == 0 ? 0 : errno
    unlink(pending)
    if result != 0 && access(path, F_OK) != 0 && [EPERM, ENOTSUP, EOPNOTSUPP, ENOSYS, EMLINK].contains(err) {
      // No hard links here: create the claim name itself with O_EXCL.
      err = ClaimBook.writeNew(path, bytes)
      result = err == 0 ? 0 : -1
    }
    if result != 0 {
      // Any error may mean "lost the race" (sshfs says EPERM), or "won, but the reply was lost" (NFS): the
      // claim file and its token decide.
      if let existing = ClaimBook.readSmall(path) {
        if ClaimRecord.decode(existing)?.token != record.token {
          return .held(observe(path: path, generation: generation, bytes: existing))
        }
      } else if err == EEXIST || err == ENOENT {
        // Gone again, or our private file was swept by the winner of this round: look again.
        return nil
      } else {
        throw CheckpointError(
          .io, path: path, "cannot create the claim file: \(String(cString: strerror(err)))", errno: err)
      }
    }
    let fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else {
      let err = errno
      throw CheckpointError(
        .io, path: path, "cannot open the claim file: \(String(cString: strerror(err)))", errno: err)
    }
    let claim = Claim(folder: folder, prefix: prefix, generation: generation, record: record, fd: fd)
    if stale != nil {
      // The stale claims below ours go; ours (the highest) is the one in force either way.
      for older in ClaimBook.generations(in: folder, prefix: prefix) where older < generation {
        unlink(ClaimBook.join(folder, prefix + String(older)))
      }
    }
    OutputFile.syncDirectory(folder)
    return .acquired(claim, tookOver: stale)
  }

  // MARK: - Files

  /// Creates `path` with O_CREAT|O_EXCL holding `bytes`, fsynced; 0 or the errno (the file removed again).
  static func writeNew(_ path: String, _ bytes: [UInt8]) -> Int32 {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return errno }
    let written = bytes.withUnsafeBytes { raw in pwrite(fd, raw.baseAddress, raw.count, 0) }
    let ok = written == bytes.count && fsync(fd) == 0
    let err = ok ? 0 : (errno == 0 ? EIO : errno)
    close(fd)
    if !ok { unlink(path) }
    return err
  }

  /// Private files of claims being made (`<prefix><generation>.<token>`) that a killed process left.
  static func pendingNames(in names: [String], prefix: String) -> [String] {
    names.filter { name in
      guard name.hasPrefix(prefix) else { return false }
      let rest = name.dropFirst(prefix.count)
      return Int(rest) == nil && rest.contains(".")
    }
  }

  /// The generation a pending name of `pendingNames` is being made for (the digits before its dot), if they are one.
  static func pendingGeneration(_ name: String, prefix: String) -> Int? {
    Int(name.dropFirst(prefix.count).prefix { $0 != "." })
  }

  /// The generations of the claim files in `folder`.
  static func generations(in folder: String, prefix: String) -> [Int] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
    return names.compactMap { name in
      guard name.hasPrefix(prefix), let generation = Int(name.dropFirst(prefix.count)), generation > 0 else {
        return nil
      }
      return generation
    }
  }

  /// A claim file's bytes (at most 4 KiB), or nil when it does not exist. ENOENT and ESTALE are "gone".
  static func readSmall(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    // A failed read gives no bytes: an unreadable claim file is one that does not parse.
    let total =
      (try? buffer.withUnsafeMutableBytes { raw in
        try FileDescriptor(rawValue: fd).readFully(at: 0, into: raw, path: path)
      }) ?? 0
    return Array(buffer[0..<total])
  }

  static func join(_ folder: String, _ name: String) -> String {
    folder.hasSuffix("/") ? folder + name : folder + "/" + name
  }

  static func newToken() -> String {
    var random = SystemRandomNumberGenerator()
    return String(random.next() as UInt64, radix: 36) + String(random.next() as UInt64, radix: 36)
  }
}
