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

  /// Reads, writes, verifies and commits the consolidated model of `folder`.
  public static func consolidate(folder: String, options: ConversionOptions) throws -> ConversionResult {
    let started = FileSystem.now()
    let times = FileSystem.FolderTimes(path: folder)
    defer { times?.restore() }
    let model = try DistributedCheckpoint.read(folder: folder)
    let output = CheckpointScanner.join(options.outDir ?? folder, outputName(options.target))
    var result = ConversionResult(path: folder, outcome: .converted, target: options.target, dtype: options.dtype)
    let replace = FileSystem.exists(output)
    if replace && !(options.force || FileSystem.isWrittenByCkptd(output)) {
      throw CheckpointError(
        .exists, path: output,
        "already exists and was not written by ckptd; not overwritten (use --force to replace it)")
    }
    let content = try plan(model, output: output, options: options)
    let writeBytes = content.uniqueBytes
    let verifyBytes = options.verify ? content.expected.reduce(Int64(0)) { $0 + $1.source.byteCount } : 0
    let monitor = ProgressMonitor(total: writeBytes + verifyBytes, options: options, path: folder)
    let file = try OutputFile(
      path: output, mode: FileSystem.permissions(of: model.files.first ?? folder), sha256: options.hashOutputs)
    var committed = false
    defer { if !committed { file.abandon() } }
    try StreamBuffer.with { scratch in
      try write(content, to: file, monitor: monitor, scratch: scratch)
      FileSystem.markWrittenByCkptd(fd: file.fd)
      if options.verify {
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
    try monitor.check()
    result.outputs = [.init(path: output, bytes: file.position, sha256: file.sha256Hex())]
    try file.commit(replace: replace)
    committed = true
    result.sources = model.files.map { path in
      .init(path: path, bytes: (try? ReadableFile(path: path).size) ?? 0, sha256: nil)
    }
    result.tensorCount = content.expected.count
    result.verified = options.verify
    result.seconds = FileSystem.now() - started
    return result
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

  /// Lays out the file: safetensors keeps one copy of tied tensors and names the alias in the metadata
  /// (as the engine does); torch files share one storage between tied names.
  static func plan(_ model: DistributedModel, output: String, options: ConversionOptions) throws -> Content {
    var seen = Set<String>()
    for tensor in model.namedTensors {
      guard seen.insert(tensor.name).inserted else {
        throw CheckpointError(.invalidFormat, path: model.folder, "tensor name '\(tensor.name)' appears twice")
      }
    }
    let unique = try model.tensors.map { try cast($0, options.dtype) }
    let expected = try model.namedTensors.map { try cast($0, options.dtype) }
    let bytes = unique.reduce(Int64(0)) { $0 + $1.source.byteCount }
    switch options.target {
    case .safetensors:
      var metadata = ["format": "pt"]
      for (alias, target) in model.aliases { metadata[alias] = target }
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
      for (alias, target) in model.aliases {
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
