import CLinux
import CheckpointFormats
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// An index file to write for a converted sharded set.
public struct IndexConversion: Sendable {
  /// The source index path; nil when a resharded output needs an index its unsharded source did not have.
  public var input: String?
  /// The output index path.
  public var output: String
  /// The rewritten index: shard names mapped, aliases kept, `total_size` recomputed.
  public var index: ShardIndex
}

/// Everything a conversion will read and write, decided before the first byte is written.
public struct ConversionPlan: Sendable {
  /// What the user gave: a checkpoint folder or one weight file.
  public var path: String
  /// The checkpoint folder (for a single file, its folder).
  public var folder: String
  /// Where outputs go.
  public var outputFolder: String
  public var target: WeightFormat
  public var dtype: CastTarget
  /// One entry per output weight file, in order.
  public var files: [FileConversion]
  /// The index files to write.
  public var indexes: [IndexConversion]
  /// Files left alone, with the reason.
  public var skipped: [SkippedFile]
  /// What was found.
  public var outcome: ConversionResult.Outcome

  /// Source index files that get no output index (a sharded source resharded into one file).
  public var retiredIndexes: [String] = []

  /// Every source weight file, once each, in plan order.
  public var sourceWeightPaths: [String] {
    var seen = Set<String>()
    return files.flatMap { [$0.input] + $0.inputs }.filter { seen.insert($0).inserted }
  }
  /// Every source index file.
  public var sourceIndexPaths: [String] { indexes.compactMap(\.input) + retiredIndexes }
  /// Source paths: every input weight file and index.
  public var sourcePaths: [String] { sourceWeightPaths + sourceIndexPaths }
  /// Output paths: every output weight file and index.
  public var outputPaths: [String] { files.map(\.output) + indexes.map(\.output) }

  /// Scans `path` (a folder or one weight file) and plans its conversion; opens each source file to read
  /// its tensor descriptors (no tensor data is read).
  public static func make(path: String, options: ConversionOptions) throws -> ConversionPlan {
    var info = stat()
    guard stat(path, &info) == 0 else {
      throw CheckpointError(.vanished, path: path, "does not exist")
    }
    let isFolder = (info.st_mode & S_IFMT) == S_IFDIR
    let scan = isFolder ? try CheckpointScanner.scan(folder: path) : try CheckpointScanner.scan(file: path)
    let outputFolder = options.outDir ?? scan.folder
    var plan = ConversionPlan(
      path: path, folder: scan.folder, outputFolder: outputFolder, target: options.target, dtype: options.dtype,
      files: [], indexes: [], skipped: scan.skipped, outcome: .noWeights)
    guard !scan.sets.isEmpty else { return plan }
    let sources = scan.sets.filter { $0.format != options.target }
    guard !sources.isEmpty else {
      plan.outcome = .alreadyInTargetFormat
      return plan
    }
    for set in sources {
      try plan.add(set, options: options)
    }
    plan.outcome = plan.files.isEmpty ? .noWeights : .converted
    var outputs = Set<String>()
    for output in plan.outputPaths {
      guard outputs.insert(output).inserted else {
        throw CheckpointError(.invalidFormat, path: output, "two source files would be converted to this same file")
      }
    }
    return plan
  }

  /// Plans one weight set (single file, or index plus shards).
  mutating func add(_ set: WeightSet, options: ConversionOptions) throws {
    if let limit = options.maxShardSize, let stem = ShardPlanning.reshardableStem(of: set, to: target) {
      try addResharded(set, stem: stem, limit: limit)
      return
    }
    var renames: [String: String] = [:]
    var planned: [FileConversion] = []
    for name in set.files {
      let input = CheckpointScanner.join(folder, name)
      guard let outputName = WeightNaming.outputName(for: name, to: target) ?? fallbackName(name) else { continue }
      let source: StateDict
      do {
        source = try WeightFile.open(path: input)
      } catch let error as CheckpointError where error.code == .unsupported && set.indexName == nil {
        skipped.append(SkippedFile(path: input, reason: error.message))
        continue
      }
      let output = CheckpointScanner.join(outputFolder, outputName)
      planned.append(
        try FileConversion.plan(source: source, input: input, output: output, target: target, dtype: dtype))
      renames[name] = outputName
    }
    files += planned
    guard let indexName = set.indexName, let outputIndexName = WeightNaming.outputIndexName(for: indexName, to: target)
    else { return }
    let indexPath = CheckpointScanner.join(folder, indexName)
    var index = try ShardIndex.read(path: indexPath)
    var weightMap: [String: String] = [:]
    for (name, shard) in index.weightMap {
      weightMap[name] = renames[shard] ?? shard
    }
    var total: Int64 = 0
    for file in planned {
      let shard = OutputFile.split(file.output).1
      for name in file.names { weightMap[name] = shard }
      total += file.uniqueBytes
    }
    index.weightMap = weightMap
    index.metadata["total_size"] = .integer(Int(total))
    indexes.append(
      IndexConversion(input: indexPath, output: CheckpointScanner.join(outputFolder, outputIndexName), index: index))
  }

  /// A single file whose name does not say its format (sniffed by content): `X.ext` -> `X.<target ext>`.
  func fallbackName(_ name: String) -> String? {
    let stem = WeightNaming.archiveName(for: name)
    return stem + (target == .safetensors ? ".safetensors" : ".bin")
  }
}
