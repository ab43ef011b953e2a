import CLinux
import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

extension TensorComparison {
  /// Every tensor name (aliases included) held by a weight file, or by all weight files of a checkpoint
  /// folder (only those in `format` when given). A name found in two files of one folder is an error.
  public static func tensors(at path: String, format: WeightFormat? = nil) throws -> [String: FoundTensor] {
    var info = stat()
    guard stat(path, &info) == 0 else {
      throw CheckpointError(.vanished, path: path, "does not exist")
    }
    guard (info.st_mode & S_IFMT) == S_IFDIR else {
      return found(in: try WeightFile.open(path: path))
    }
    let scan = try CheckpointScanner.scan(folder: path)
    guard !scan.sets.isEmpty else {
      throw CheckpointError(.invalidFormat, path: path, "no weight files in this folder")
    }
    var result: [String: FoundTensor] = [:]
    for set in scan.sets where format == nil || set.format == format {
      for name in set.files {
        let stateDict = try WeightFile.open(path: CheckpointScanner.join(path, name))
        for (tensorName, tensor) in found(in: stateDict) {
          if let other = result[tensorName] {
            throw CheckpointError(
              .invalidFormat, path: path,
              "tensor '\(tensorName)' is in both \(other.stateDict.file.path) and \(stateDict.file.path)")
          }
          result[tensorName] = tensor
        }
      }
    }
    return result
  }

  /// Compares two weight files or checkpoint folders: the same names, dtypes, shapes and bytes.
  /// Returns the number of tensors compared; throws `.mismatch` with the first difference.
  ///
  /// A folder holding weights in both formats (a converted checkpoint) is compared through the format
  /// the other side has, or through its safetensors files if both sides hold both.
  public static func compare(_ first: String, _ second: String) throws -> Int {
    let (firstFormats, secondFormats) = (try formats(at: first), try formats(at: second))
    func choose(_ mine: Set<WeightFormat>, _ other: Set<WeightFormat>) -> WeightFormat? {
      guard mine.count > 1 else { return nil }
      return other.count == 1 ? other.first : .safetensors
    }
    let expectedSide = try tensors(at: first, format: choose(firstFormats, secondFormats))
    let actualSide = try tensors(at: second, format: choose(secondFormats, firstFormats))
    var expected: [ExpectedTensor] = []
    for name in expectedSide.keys.sorted() {
      guard let tensor = expectedSide[name] else { continue }
      expected.append(
        ExpectedTensor(
          name: name, dtype: tensor.view.dtype, shape: tensor.view.shape,
          source: try tensor.stateDict.source(for: tensor.view)))
    }
    if let extra = actualSide.keys.sorted().first(where: { expectedSide[$0] == nil }) {
      throw CheckpointError(.mismatch, path: second, "has tensor '\(extra)', which \(first) does not have")
    }
    if let missing = expected.first(where: { actualSide[$0.name] == nil }) {
      throw CheckpointError(.mismatch, path: second, "has no tensor '\(missing.name)', which \(first) has")
    }
    try StreamBuffer.with { scratch in
      try check(expected: expected, actual: actualSide, label: second, scratch: scratch)
    }
    return expected.count
  }

  /// The weight formats a folder holds, or the format of a file (empty if the path does not exist).
  static func formats(at path: String) throws -> Set<WeightFormat> {
    var info = stat()
    guard stat(path, &info) == 0 else { return [] }
    guard (info.st_mode & S_IFMT) == S_IFDIR else { return [try WeightFile.detect(path: path)] }
    return Set(try CheckpointScanner.scan(folder: path).sets.map(\.format))
  }
}
