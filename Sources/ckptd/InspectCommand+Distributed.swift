import CheckpointConversion
import CheckpointFormats
import Foundation

/// `ckptd inspect FOLDER` on a DeepSpeed ZeRO or Distributed Checkpoint folder: kind, world size, dtypes,
/// parameter count and every tensor as consolidation would write it.
extension InspectCommand {
  /// The JSON document for a distributed folder.
  struct DistributedReport: Encodable {
    var folder: String
    var kind: String
    var worldSize: Int
    var dtypes: [String]
    var parameterCount: Int
    var tensorCount: Int
    var totalBytes: Int64
    var aliases: [String: String]
    var tensors: [TensorRow]
  }

  /// Prints the report and returns true if `path` is a distributed folder; false otherwise.
  static func inspectDistributed(_ path: String, json: Bool) throws -> Bool {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue,
      DistributedCheckpoint.detect(folder: path) != nil
    else { return false }
    let model = try DistributedCheckpoint.read(folder: path)
    let rows = model.namedTensors.map { tensor in
      TensorRow(
        name: tensor.name, dtype: tensor.dtype.safetensorsName, shape: tensor.shape,
        bytes: Int64(tensor.elementCount) * Int64(tensor.dtype.byteSize), storage: nil)
    }
    let report = DistributedReport(
      folder: path, kind: model.kind.description, worldSize: model.worldSize,
      dtypes: Set(model.tensors.map(\.dtype.safetensorsName)).sorted(), parameterCount: model.parameterCount,
      tensorCount: rows.count, totalBytes: model.tensors.reduce(Int64(0)) { $0 + $1.source.byteCount },
      aliases: Dictionary(model.aliases.map { ($0.alias, $0.target) }, uniquingKeysWith: { a, _ in a }),
      tensors: rows)
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
      print(String(decoding: try encoder.encode(report), as: UTF8.self))
      return true
    }
    var head = [
      "folder: \(path)", "kind: \(report.kind)", "world size: \(report.worldSize)",
      "dtype: \(report.dtypes.joined(separator: ", "))", "parameters: \(report.parameterCount)",
    ]
    for (alias, target) in report.aliases.sorted(by: { $0.key < $1.key }) {
      head.append("tied: \(alias) = \(target)")
    }
    let table = Self.table(
      Report(
        file: path, format: report.kind, metadata: [:], tensorCount: rows.count, totalBytes: report.totalBytes,
        tensors: rows))
    // The table's first two lines repeat file and format: replace them with the distributed header.
    print(
      (head + table.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(2).map(String.init))
        .joined(separator: "\n"))
    return true
  }
}
