import CLinux
import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

/// `ckptd verify` with a distributed checkpoint on either side: the folder's consolidated model (what
/// `Consolidator` writes) is compared with the other side's tensors, bit for bit.
public enum DistributedComparison {
  /// True if `path` is a folder holding a distributed checkpoint and no model weights of its own.
  public static func isDistributedOnly(_ path: String) throws -> Bool {
    var info = stat()
    guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { return false }
    guard DistributedCheckpoint.detect(folder: path) != nil else { return false }
    return try CheckpointScanner.scan(folder: path).sets.isEmpty
  }

  /// Compares two paths; a distributed-only folder stands for its consolidated model. Falls back to
  /// `TensorComparison.compare` when neither side is one. Returns the number of tensors compared.
  public static func compare(_ first: String, _ second: String) throws -> Int {
    let (firstDistributed, secondDistributed) = (try isDistributedOnly(first), try isDistributedOnly(second))
    guard firstDistributed || secondDistributed else { return try TensorComparison.compare(first, second) }
    let expected = try side(first, distributed: firstDistributed)
    let actual = try side(second, distributed: secondDistributed)
    let expectedNames = Set(expected.map(\.name))
    if let extra = actual.map(\.name).sorted().first(where: { !expectedNames.contains($0) }) {
      throw CheckpointError(.mismatch, path: second, "has tensor '\(extra)', which \(first) does not have")
    }
    var found: [String: FoundTensor] = [:]
    if !secondDistributed { found = try TensorComparison.tensors(at: second) }
    try StreamBuffer.with { scratch in
      if secondDistributed {
        // Both sides distributed: compare the streams of the second with the first's.
        let byName = Dictionary(actual.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for tensor in expected {
          guard let other = byName[tensor.name] else {
            throw CheckpointError(.mismatch, path: second, "has no tensor '\(tensor.name)', which \(first) has")
          }
          guard other.dtype == tensor.dtype, other.shape == tensor.shape,
            try digest(other.source, scratch) == digest(tensor.source, scratch)
          else { throw CheckpointError(.mismatch, path: second, "tensor '\(tensor.name)' differs") }
        }
      } else {
        try TensorComparison.check(expected: expected, actual: found, label: second, scratch: scratch)
      }
    }
    return expected.count
  }

  /// One side as expected tensors.
  static func side(_ path: String, distributed: Bool) throws -> [ExpectedTensor] {
    if distributed {
      return try DistributedCheckpoint.read(folder: path).namedTensors.map {
        ExpectedTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, source: $0.source)
      }
    }
    return try TensorComparison.tensors(at: path).sorted { $0.key < $1.key }.map { name, tensor in
      ExpectedTensor(
        name: name, dtype: tensor.view.dtype, shape: tensor.view.shape,
        source: try tensor.stateDict.source(for: tensor.view))
    }
  }

  static func digest(_ source: any TensorSource, _ scratch: UnsafeMutableRawBufferPointer) throws -> String {
    var hasher = StreamingSHA256()
    try source.stream(scratch: scratch) { hasher.update($0) }
    return hasher.hexDigest()
  }
}
