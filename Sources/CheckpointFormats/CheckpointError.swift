/// The one error type of the formats library: what failed, on which file, and why.
///
/// `description` is the one-line message the command line prints: `<file>: <message>`.
public struct CheckpointError: Error, CustomStringConvertible, Sendable, Equatable {
  /// What kind of failure this is: a closed set, compared by case (never by a string).
  public enum Code: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// The file is not in the format it claims, or breaks one of its rules.
    case invalidFormat
    /// The file is cut short: a writer has not finished, or the disk filled.
    case truncated
    /// A pickle asked for something the restricted machine refuses (a global, an opcode).
    case forbidden
    /// A dtype or feature that ckptd knows but cannot carry.
    case unsupported
    /// A system call failed; `errno` says why.
    case io
    /// A size, offset or count exceeds ckptd's bounds.
    case limitExceeded
    /// The output already exists and was not written by ckptd.
    case exists
    /// Verification found a difference between source and output.
    case mismatch
    /// The file or folder vanished while being read.
    case vanished
    /// The work was stopped by its cancellation check (SIGTERM in the daemon); temporaries are removed.
    case cancelled
    /// Another process (this node or another) holds a live claim on the checkpoint.
    case claimed

    /// The case name (`invalidFormat`, `io`, ...).
    public var name: String { rawValue }
    public var description: String { rawValue }
  }

  public var code: Code
  /// The file the error is about, as the user named it.
  public var path: String
  /// What is wrong, in words for the person at the terminal.
  public var message: String
  /// The `errno` value for `.io` errors.
  public var errno: Int32?

  public init(_ code: Code, path: String, _ message: String, errno: Int32? = nil) {
    self.code = code
    self.path = path
    self.message = message
    self.errno = errno
  }

  public var description: String { path.isEmpty ? message : "\(path): \(message)" }

  /// A copy naming another file (a reader's error re-attributed to the file the user gave).
  public func at(_ path: String) -> CheckpointError {
    var copy = self
    copy.path = path
    return copy
  }
}
