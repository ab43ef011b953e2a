import CheckpointFormats

/// Counts bytes written and verified, reports progress, polls for cancellation and (in tests) injects a
/// failure after a given number of written bytes. Used from the one thread that runs the conversion.
final class ProgressMonitor: @unchecked Sendable {
  let total: Int64
  private(set) var done: Int64 = 0
  private(set) var written: Int64 = 0
  let options: ConversionOptions
  let path: String

  init(total: Int64, options: ConversionOptions, path: String) {
    self.total = total
    self.options = options
    self.path = path
  }

  /// Throws `.cancelled` if the cancellation check says so.
  func check() throws {
    if let isCancelled = options.isCancelled, isCancelled() {
      throw CheckpointError(.cancelled, path: path, "conversion cancelled; temporary files removed")
    }
  }

  /// The last check before the outputs are committed: cancellation, then whether the claim is still ours.
  func checkBeforeCommit() throws {
    try check()
    if let stillOwned = options.stillOwned, !stillOwned() {
      throw CheckpointError(.cancelled, path: path, "claim lost before commit; temporary files removed")
    }
  }

  /// Records `count` more bytes written (or verified when `writing` is false).
  func advance(_ count: Int, writing: Bool) throws {
    done += Int64(count)
    if writing {
      written += Int64(count)
      if let limit = options.failAfterBytes, written >= limit {
        throw CheckpointError(.io, path: path, "injected failure after \(written) bytes (test hook)")
      }
    }
    options.progress?(done, total)
    try check()
  }
}

/// A tensor source that reports every chunk it hands out to a `ProgressMonitor`.
struct MonitoredSource: TensorSource {
  let inner: any TensorSource
  let monitor: ProgressMonitor

  var byteCount: Int64 { inner.byteCount }

  var fileRange: FileRange? { inner.fileRange }

  func didCopy(bytes: Int) throws {
    try inner.didCopy(bytes: bytes)
    try monitor.advance(bytes, writing: true)
  }

  func stream(scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
    try monitor.check()
    try inner.stream(scratch: scratch) { chunk in
      try body(chunk)
      try monitor.advance(chunk.count, writing: true)
    }
  }
}
