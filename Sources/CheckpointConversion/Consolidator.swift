import CLinux
import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

/// Consolidates a distributed checkpoint (DeepSpeed ZeRO, torch DCP) into one ordinary weight file:
/// `model.safetensors` or `pytorch_model.bin` beside the checkpoint (or under `outDir`).
///
/// Tensors stream from the rank files through the same writers and temporary-file discipline as
/// `Converter`: written under a temporary name, re-read and compared with the rank files' bytes, then
/// renamed into place; memory stays flat whatever the model size. Values equal `zero_to_fp32.py` /
/// `dcp_to_torch_save` (see `ZeroCheckpoint`, `DCPCheckpoint`). Rank files are never modified.
public enum Consolidator {
  /// Whether `convert` should consolidate `folder` under `mode`: a distributed checkpoint and, for
  /// `auto`, no model weights of its own.
  public static func shouldConsolidate(folder: String, mode: ConsolidateMode) throws -> Bool {
    guard mode != .never, DistributedCheckpoint.detect(folder: folder) != nil else { return false }
    if mode == .always { return true }
    return try CheckpointScanner.scan(folder: folder).sets.isEmpty
  }

  /// What `ckptd convert` and the daemon call: consolidates `path` when `shouldConsolidate` says so,
  /// otherwise converts it as an ordinary checkpoint (`Converter.convert`).
  public static func convert(path: String, mode: ConsolidateMode, options: ConversionOptions) throws
    -> ConversionResult
  {
    try shouldConsolidate(folder: path, mode: mode)
      ? consolidate(folder: path, options: options) : Converter.convert(path: path, options: options)
  }

  /// The output file name for `target`.
  public static func outputName(_ target: WeightFormat) -> String {
    target == .safetensors ? "model.safetensors" : "pytorch_model.bin"
  }

  /// Reads, writes, verifies and commits the consolidated model of `folder`: one file, or shards of at
  /// most `options.maxShardSize` bytes with an index, named and split as `save_pretrained` does
  /// (`ShardPlanning`); tied names stay in their tensor's shard.
  public static func consolidate(folder: String, options: ConversionOptions) throws -> ConversionResult {
    let started = FileSystem.now()
    let times = FileSystem.FolderTimes(path: folder)
    defer { times?.restore() }
    let model = try DistributedCheckpoint.read(folder: folder)
    let outputFolder = options.outDir ?? folder
    let shards = shardLayout(model, options: options)
    var result = ConversionResult(path: folder, outcome: .converted, target: options.target, dtype: options.dtype)
    let indexPath = shards.index.map { CheckpointScanner.join(outputFolder, $0.name) }
    var replace: [String: Bool] = [:]
    for output in shards.files.map({ CheckpointScanner.join(outputFolder, $0.name) }) + (indexPath.map { [$0] } ?? [])
    where FileSystem.exists(output) {
      guard options.force || FileSystem.isWrittenByCkptd(output) else {
        throw CheckpointError(
          .exists, path: output,
          "already exists and was not written by ckptd; not overwritten (use --force to replace it)")
      }
      replace[output] = true
    }
    var contents: [(output: String, content: Content)] = []
    for shard in shards.files {
      let output = CheckpointScanner.join(outputFolder, shard.name)
      contents.append((output, try plan(model, tensors: shard.tensors, output: output, options: options)))
    }
    let writeBytes = contents.reduce(Int64(0)) { $0 + $1.content.uniqueBytes }
    let compared = contents.flatMap(\.content.expected).reduce(Int64(0)) { $0 + $1.source.byteCount }
    let verifyBytes = options.verify ? compared : 0
    let monitor = ProgressMonitor(total: writeBytes + verifyBytes, options: options, path: folder)
    let mode = FileSystem.permissions(of: model.files.first ?? folder)
    var pending: [OutputFile] = []
    defer { pending.forEach { $0.abandon() } }
    try StreamBuffer.with { scratch in
      for (output, content) in contents {
        try monitor.check()
        let file = try OutputFile(path: output, mode: mode, sha256: options.hashOutputs)
        pending.append(file)
        try write(content, to: file, monitor: monitor, scratch: scratch)
        FileSystem.markWrittenByCkptd(file)
        guard options.verify else { continue }
        let reread: StateDict
        do {
          reread = try WeightFile.open(path: file.temporaryPath)
        } catch let error as CheckpointError {
          throw CheckpointError(.mismatch, path: output, "the written file does not read back: \(error.message)")
        }
        try TensorComparison.check(
          expected: content.expected, actual: TensorComparison.found(in: reread), label: output, scratch: scratch,
          onBytes: { try monitor.advance($0, writing: false) })
      }
    }
    if let index = shards.index, let indexPath {
      let file = try OutputFile(path: indexPath, mode: mode, sha256: options.hashOutputs)
      pending.append(file)
      try file.write(index.index.serialized())
      FileSystem.markWrittenByCkptd(file)
    }
    try monitor.checkBeforeCommit()
    result.outputs = pending.map { .init(path: $0.path, bytes: $0.position, sha256: $0.sha256Hex()) }
    try Converter.commit(pending, replace: replace)
    pending = []
    result.sources = model.files.map { path in
      .init(path: path, bytes: (try? ReadableFile(path: path).size) ?? 0, sha256: nil)
    }
    result.tensorCount = contents.reduce(0) { $0 + $1.content.expected.count }
    result.verified = options.verify
    result.seconds = FileSystem.now() - started
    return result
  }

  /// How the consolidated model is split: each output file's name and the positions (in
  /// `model.tensors`) of the tensors it holds, and the index when there is more than one file.
  struct ShardLayout {
    var files: [(name: String, tensors: [Int])]
    var index: (name: String, index: ShardIndex)?
  }

  /// Splits `model` by `options.maxShardSize` (one file without it) the way `ShardPlanning` splits a
  /// plain conversion: tensors in output order, sizes in the output dtype, aliases add no size.
  static func shardLayout(_ model: DistributedModel, options: ConversionOptions) -> ShardLayout {
    let single = ShardLayout(files: [(outputName(options.target), Array(model.tensors.indices))], index: nil)
    guard let limit = options.maxShardSize, !model.tensors.isEmpty else { return single }
    let sizes = model.tensors.map { Int64($0.elementCount) * Int64(options.dtype.outputDType(for: $0.dtype).byteSize) }
    let shards = ShardPlanning.split(sizes: sizes, limit: limit)
    guard shards.count > 1 else { return single }
    let stem = options.target == .safetensors ? "model" : "pytorch_model"
    let ext = options.target == .safetensors ? ".safetensors" : ".bin"
    let names = ShardPlanning.shardNames(stem: stem, ext: ext, count: shards.count)
    var weightMap: [String: String] = [:]
    for (positions, name) in zip(shards, names) {
      for position in positions { weightMap[model.tensors[position].name] = name }
    }
    for (alias, target) in model.aliases {
      if let shard = weightMap[target] { weightMap[alias] = shard }
    }
    let total = sizes.reduce(0, +)
    // What save_pretrained writes: {"metadata": {"total_parameters": N, "total_size": bytes}, "weight_map": ...}.
    let index = ShardIndex(
      weightMap: weightMap,
      metadata: ["total_parameters": .integer(model.parameterCount), "total_size": .integer(Int(total))])
    return ShardLayout(
      files: zip(names, shards).map { (name: $0, tensors: $1) }, index: (stem + ext + WeightNaming.indexSuffix, index))
  }

  /// What one consolidated file holds.
  struct Content {
    var safetensors: (tensors: [OutputTensor], metadata: [String: String])?
    var torch: (storages: [OutputStorage], tensors: [TensorInfo], archiveName: String)?
    /// Every name the file answers to, with its expected bytes (aliases included).
    var expected: [ExpectedTensor]
    var uniqueBytes: Int64
  }

  static func cast(_ tensor: DistributedTensor, _ dtype: CastTarget) throws -> OutputTensor {
    let out = dtype.outputDType(for: tensor.dtype)
    let source = out == tensor.dtype ? tensor.source : try CastSource(inner: tensor.source, from: tensor.dtype, to: out)
    return OutputTensor(name: tensor.name, dtype: out, shape: tensor.shape, source: source)
  }

  /// Lays out one file holding `model.tensors` at `positions` and their tied names: safetensors keeps
  /// one copy of tied tensors and names the alias in the metadata (as the engine does); torch files share
  /// one storage between tied names.
  static func plan(_ model: DistributedModel, tensors positions: [Int], output: String, options: ConversionOptions)
    throws -> Content
  {
    var seen = Set<String>()
    for tensor in model.namedTensors {
      guard seen.insert(tensor.name).inserted else {
        throw CheckpointError(.invalidFormat, path: model.folder, "tensor name '\(tensor.name)' appears twice")
      }
    }
    let unique = try positions.map { try cast(model.tensors[$0], options.dtype) }
    let here = Set(unique.map(\.name))
    let aliases = model.aliases.filter { here.contains($0.target) }
    let names = here.union(aliases.map(\.alias))
    let expected = try model.namedTensors.filter { names.contains($0.name) }.map { try cast($0, options.dtype) }
    let bytes = unique.reduce(Int64(0)) { $0 + $1.source.byteCount }
    switch options.target {
    case .safetensors:
      var metadata = ["format": "pt"]
      for (alias, target) in aliases { metadata[alias] = target }
      return Content(safetensors: (unique, metadata), torch: nil, expected: expected, uniqueBytes: bytes)
    case .torch:
      var storages: [OutputStorage] = []
      var keys: [String: String] = [:]
      var tensors: [TensorInfo] = []
      for tensor in unique {
        let key = String(storages.count)
        keys[tensor.name] = key
        storages.append(OutputStorage(key: key, dtype: tensor.dtype, source: tensor.source))
        tensors.append(TensorInfo(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, storageKey: key))
      }
      for (alias, target) in aliases {
        guard let key = keys[target], let info = tensors.first(where: { $0.name == target }) else { continue }
        var copy = info
        copy.name = alias
        copy.storageKey = key
        tensors.append(copy)
      }
      let archive = WeightNaming.archiveName(for: OutputFile.split(output).1)
      return Content(safetensors: nil, torch: (storages, tensors, archive), expected: expected, uniqueBytes: bytes)
    }
  }

  static func write(
    _ content: Content, to output: OutputFile, monitor: ProgressMonitor, scratch: UnsafeMutableRawBufferPointer
  ) throws {
    if let (tensors, metadata) = content.safetensors {
      let monitored = tensors.map { tensor in
        var copy = tensor
        copy.source = MonitoredSource(inner: tensor.source, monitor: monitor)
        return copy
      }
      try SafetensorsWriter.write(tensors: monitored, metadata: metadata, to: output, scratch: scratch)
    } else if let (storages, tensors, archiveName) = content.torch {
      let monitored = storages.map { storage in
        var copy = storage
        copy.source = MonitoredSource(inner: storage.source, monitor: monitor)
        return copy
      }
      try TorchWriter.write(
        storages: monitored, tensors: tensors, archiveName: archiveName, to: output, scratch: scratch)
    }
  }
}
