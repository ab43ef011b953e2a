import CLinux
import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

/// A tensor as it should be: name, dtype, shape and the stream of its expected bytes (the same four
/// things a writer takes).
public typealias ExpectedTensor = OutputTensor

/// A tensor as a file holds it: the file's descriptors and the view that answers to the name.
public struct FoundTensor: Sendable {
  public var stateDict: StateDict
  public var view: TensorInfo

  public init(stateDict: StateDict, view: TensorInfo) {
    self.stateDict = stateDict
    self.view = view
  }
}

/// Bit-for-bit comparison of tensors, streaming through one scratch buffer.
public enum TensorComparison {
  /// Checks that `actual` holds exactly the names of `expected`, each with the same dtype, shape and
  /// bytes. Throws `.mismatch` naming `label` and the first difference.
  ///
  /// - Parameter onBytes: called with the number of bytes compared as the comparison advances.
  public static func check(
    expected: [ExpectedTensor], actual: [String: FoundTensor], label: String,
    scratch: UnsafeMutableRawBufferPointer, onBytes: (Int) throws -> Void = { _ in }
  ) throws {
    let expectedNames = Set(expected.map(\.name))
    if let extra = actual.keys.sorted().first(where: { !expectedNames.contains($0) }) {
      throw CheckpointError(.mismatch, path: label, "has tensor '\(extra)', which the other side does not have")
    }
    for tensor in expected {
      guard let found = actual[tensor.name] else {
        throw CheckpointError(.mismatch, path: label, "tensor '\(tensor.name)' is missing")
      }
      let view = found.view
      guard view.dtype == tensor.dtype else {
        throw CheckpointError(
          .mismatch, path: label,
          "tensor '\(tensor.name)': dtype \(view.dtype.safetensorsName), expected \(tensor.dtype.safetensorsName)")
      }
      guard view.shape == tensor.shape else {
        throw CheckpointError(
          .mismatch, path: label, "tensor '\(tensor.name)': shape \(view.shape), expected \(tensor.shape)")
      }
      let actualSource = try found.stateDict.source(for: view)
      guard actualSource.byteCount == tensor.source.byteCount else {
        throw CheckpointError(
          .mismatch, path: label,
          "tensor '\(tensor.name)': \(actualSource.byteCount) bytes, expected \(tensor.source.byteCount)")
      }
      if let offset = try firstDifference(
        expected: tensor.source, found: found, actualSource: actualSource, scratch: scratch, onBytes: onBytes)
      {
        let at = offset >= 0 ? " at byte \(offset)" : ""
        throw CheckpointError(.mismatch, path: label, "tensor '\(tensor.name)': bytes differ\(at)")
      }
    }
  }

  /// Every name in `stateDict` (aliases included) with its view.
  public static func found(in stateDict: StateDict) -> [String: FoundTensor] {
    var result: [String: FoundTensor] = [:]
    for view in stateDict.logicalTensors() where result[view.name] == nil {
      result[view.name] = FoundTensor(stateDict: stateDict, view: view)
    }
    return result
  }

  private struct Stop: Error {}

  /// The offset of the first differing byte, -1 if the bytes differ somewhere (hash comparison), nil if
  /// equal.
  static func firstDifference(
    expected: any TensorSource, found: FoundTensor, actualSource: any TensorSource,
    scratch: UnsafeMutableRawBufferPointer, onBytes: (Int) throws -> Void
  ) throws -> Int64? {
    let view = found.view
    guard let storage = found.stateDict.storages[view.storageKey] else { return -1 }
    guard view.isContiguous else {
      return try hash(expected, scratch: scratch, onBytes: onBytes)
        == hash(actualSource, scratch: scratch, onBytes: { _ in })
        ? nil : -1
    }
    let base = storage.fileOffset + Int64(view.storageOffset) * Int64(view.dtype.byteSize)
    let half = scratch.count / 2
    let streamBuffer = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<half])
    let readBuffer = UnsafeMutableRawBufferPointer(rebasing: scratch[half..<scratch.count])
    guard let readBase = readBuffer.baseAddress else { return nil }
    var position: Int64 = 0
    var difference: Int64?
    do {
      try expected.stream(scratch: streamBuffer) { chunk in
        guard let chunkBase = chunk.baseAddress else { return }
        var done = 0
        while done < chunk.count {
          let n = Swift.min(chunk.count - done, readBuffer.count)
          try found.stateDict.file.read(
            at: base + position + Int64(done), into: UnsafeMutableRawBufferPointer(rebasing: readBuffer[0..<n]))
          if memcmp(chunkBase + done, readBase, n) != 0 {
            for index in 0..<n where chunk[done + index] != readBuffer[index] {
              difference = position + Int64(done + index)
              break
            }
            throw Stop()
          }
          done += n
        }
        position += Int64(chunk.count)
        try onBytes(chunk.count)
      }
    } catch is Stop {
      return difference ?? -1
    }
    return nil
  }

  /// SHA-256 of a stream (for views that are not one contiguous range of their file).
  static func hash(
    _ source: any TensorSource, scratch: UnsafeMutableRawBufferPointer, onBytes: (Int) throws -> Void
  ) throws -> String {
    var hasher = StreamingSHA256()
    try source.stream(scratch: scratch) { chunk in
      hasher.update(chunk)
      try onBytes(chunk.count)
    }
    return hasher.hexDigest()
  }
}
