import ArgumentParser
import CheckpointFormats
import Foundation

/// `ckptd inspect FILE`: format, metadata and every tensor of one weight file.
struct InspectCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inspect",
    abstract: "Show a weight file's format, metadata and every tensor's name, dtype, shape and size.",
    discussion: "Reads only the file's header or pickle; no tensor data is loaded and no pickle code runs."
  )

  @Argument(help: "A safetensors file or a PyTorch .bin/.pt file.")
  var file: String

  @Flag(help: "Print JSON instead of a table.")
  var json = false

  /// One tensor in the JSON output.
  struct TensorRow: Encodable {
    var name: String
    var dtype: String
    var shape: [Int]
    var bytes: Int64
    var storage: String?
  }

  /// The JSON document.
  struct Report: Encodable {
    var file: String
    var format: String
    var metadata: [String: String]
    var tensorCount: Int
    var totalBytes: Int64
    var tensors: [TensorRow]
  }

  func run() async throws {
    if try Self.inspectDistributed(file, json: json) { return }
    let stateDict = try WeightFile.open(path: file)
    let rows = stateDict.tensors.map { tensor in
      TensorRow(
        name: tensor.name, dtype: tensor.dtype.safetensorsName, shape: tensor.shape, bytes: tensor.byteCount,
        storage: stateDict.format == .torch ? tensor.storageKey : nil)
    }
    let report = Report(
      file: file, format: stateDict.formatDetail, metadata: stateDict.metadata, tensorCount: rows.count,
      totalBytes: rows.reduce(0) { $0 + $1.bytes }, tensors: rows)
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
      print(String(decoding: try encoder.encode(report), as: UTF8.self))
    } else {
      print(Self.table(report))
    }
  }

  /// The human table.
  static func table(_ report: Report) -> String {
    var lines = ["file: \(report.file)", "format: \(report.format)"]
    for (key, value) in report.metadata.sorted(by: { $0.key < $1.key }) {
      lines.append("metadata: \(key) = \(value)")
    }
    lines.append("tensors: \(report.tensorCount), \(report.totalBytes) bytes")
    let header = ["NAME", "DTYPE", "SHAPE", "BYTES"]
    let cells = report.tensors.map { row in
      [row.name, row.dtype, "[" + row.shape.map(String.init).joined(separator: ", ") + "]", String(row.bytes)]
    }
    var widths = header.map(\.count)
    for row in cells {
      for (column, cell) in row.enumerated() { widths[column] = Swift.max(widths[column], cell.count) }
    }
    func line(_ row: [String]) -> String {
      row.enumerated().map { column, cell in
        column == row.count - 1
          ? String(repeating: " ", count: widths[column] - cell.count) + cell
          : cell + String(repeating: " ", count: widths[column] - cell.count)
      }.joined(separator: "  ")
    }
    lines.append(line(header))
    lines += cells.map(line)
    return lines.joined(separator: "\n")
  }
}
