/// The one error type of the formats library: what failed, on which file, and why.
///
/// `description` is the one-line message the command line prints: `<file>: <message>`.
public struct CheckpointError: Error, CustomStringConvertible, Sendable, Equatable {
  /// What kind of failure this is; extensible like NIO's `FileSystemError.Code`.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public var description: String { name }

    /// The file is not in the format it claims, or breaks one of its rules.
    public static let invalidFormat = Code("invalidFormat")
    /// The file is cut short: a writer has not finished, or the disk filled.
    public static let truncated = Code("truncated")
    /// A pickle asked for something the restricted machine refuses (a global, an opcode).
    public static let forbidden = Code("forbidden")
    /// A dtype or feature that ckptd knows but cannot carry.
    public static let unsupported = Code("unsupported")
    /// A system call failed; `errno` says why.
    public static let io = Code("io")
    /// A size, offset or count exceeds ckptd's bounds.
    public static let limitExceeded = Code("limitExceeded")
    /// The output already exists and was not written by ckptd.
    public static let exists = Code("exists")
    /// Verification found a difference between source and output.
    public static let mismatch = Code("mismatch")
    /// The file or folder vanished while being read.
    public static let vanished = Code("vanished")
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
