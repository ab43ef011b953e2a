import ArgumentParser
import CheckpointFormats

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
  struct Report {
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
      print(String(decoding: Self.json(report).encoded(indent: 2, asciiOnly: false), as: UTF8.self))
    } else {
      print(Self.table(report))
    }
  }

  /// The JSON document, keys sorted, two-space indent; empty objects and arrays print as `{}` and `[]`.
  static func json(_ report: Report) -> JSONValue {
    let tensors = report.tensors.map { row in
      var members: [String: JSONValue] = [
        "name": .string(row.name), "dtype": .string(row.dtype), "shape": .array(row.shape.map { .integer($0) }),
        "bytes": .integer(Int(row.bytes)),
      ]
      if let storage = row.storage { members["storage"] = .string(storage) }
      return JSONValue.sortedObject(members)
    }
    return .sortedObject([
      "file": .string(report.file), "format": .string(report.format),
      "metadata": .sortedObject(report.metadata.mapValues { .string($0) }), "tensorCount": .integer(report.tensorCount),
      "totalBytes": .integer(Int(report.totalBytes)), "tensors": .array(tensors),
    ])
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
