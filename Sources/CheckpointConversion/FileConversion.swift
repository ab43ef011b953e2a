import CheckpointFormats

/// The plan for one output file: which source it reads, where it goes, and what it will hold.
public struct FileConversion: Sendable {
  /// Every source file the output reads from.
  public var inputs: [String] { Array(Set(expected.map(\.stateDict.file.path) + [input])).sorted() }

  /// What the output holds, ready for the writer.
  public enum Content: Sendable {
    case safetensors(tensors: [OutputTensor], metadata: [String: String])
    case torch(storages: [OutputStorage], tensors: [TensorInfo], archiveName: String)
  }

  /// The source file path (the first, when a resharded output gathers tensors from several files).
  public var input: String
  /// The final output path.
  public var output: String
  /// Every name the output will answer to, with the source view its bytes come from (before any cast).
  public var expected: [FoundTensor]
  /// What will be written.
  public var content: Content
  /// Names written as aliases: `[dropped: kept]` (safetensors metadata, or torch names sharing storage).
  public var aliases: [String: String]
  /// Every name the output will answer to (tensors and aliases).
  public var names: [String]
  /// Bytes of tensor data written (each storage once): what `metadata.total_size` adds up.
  public var uniqueBytes: Int64

  /// Bytes verification compares: every name of the source (aliases included), in the output dtype.
  public var verifyBytes: Int64 {
    expected.reduce(Int64(0)) { total, found in
      total + Int64(found.view.elementCount) * Int64(dtype.outputDType(for: found.view.dtype).byteSize)
    }
  }

  /// Every source view of `source` (its logical tensors, aliases included).
  static func expected(in source: StateDict) -> [FoundTensor] {
    source.logicalTensors().map { FoundTensor(stateDict: source, view: $0) }
  }

  /// The dtype choice the content was planned with.
  public var dtype: CastTarget

  /// Plans the conversion of `source` (read from `input`) into `target` at `output`, casting floating
  /// tensors as `dtype` asks.
  public static func plan(
    source: StateDict, input: String, output: String, target: WeightFormat, dtype: CastTarget
  ) throws -> FileConversion {
    switch target {
    case .safetensors: return try planSafetensors(source: source, input: input, output: output, dtype: dtype)
    case .torch: return try planTorch(source: source, input: input, output: output, dtype: dtype)
    }
  }

  /// The source stream of a tensor, cast to the output dtype when that differs.
  static func castSource(_ source: StateDict, _ tensor: TensorInfo, dtype: CastTarget) throws -> any TensorSource {
    let inner = try source.source(for: tensor)
    let outType = dtype.outputDType(for: tensor.dtype)
    if outType == tensor.dtype { return inner }
    return try CastSource(inner: inner, from: tensor.dtype, to: outType)
  }

  static func planSafetensors(
    source: StateDict, input: String, output: String, dtype: CastTarget
  ) throws -> FileConversion {
    var tensors = source.logicalTensors()
    var metadata = source.metadata
    var aliases: [String: String] = [:]
    if source.format == .torch {
      aliases = AliasDetection.exactAliases(tensors: tensors, storages: source.storages)
      aliases.removeValue(forKey: "format")
    } else {
      aliases = AliasDetection.aliases(
        fromMetadata: source.metadata, tensorNames: Set(source.tensors.map(\.name)))
      tensors = source.tensors
    }
    var seen = Set<String>()
    var outputs: [OutputTensor] = []
    var bytes: Int64 = 0
    for tensor in tensors where aliases[tensor.name] == nil {
      guard seen.insert(tensor.name).inserted else {
        throw CheckpointError(.invalidFormat, path: input, "tensor name '\(tensor.name)' appears twice")
      }
      let src = try castSource(source, tensor, dtype: dtype)
      outputs.append(
        OutputTensor(name: tensor.name, dtype: dtype.outputDType(for: tensor.dtype), shape: tensor.shape, source: src))
      bytes += src.byteCount
    }
    for (dropped, kept) in aliases {
      if metadata[dropped] == nil { metadata[dropped] = kept }
    }
    metadata["format"] = "pt"
    let names = outputs.map(\.name) + aliases.keys.sorted()
    return FileConversion(
      input: input, output: output, expected: expected(in: source),
      content: .safetensors(tensors: outputs, metadata: metadata),
      aliases: aliases, names: names, uniqueBytes: bytes, dtype: dtype)
  }

  static func planTorch(source: StateDict, input: String, output: String, dtype: CastTarget) throws -> FileConversion {
    let names = Set(source.tensors.map(\.name))
    let aliases =
      source.format == .safetensors ? AliasDetection.aliases(fromMetadata: source.metadata, tensorNames: names) : [:]
    var aliasesOf: [String: [String]] = [:]
    for (dropped, kept) in aliases { aliasesOf[kept, default: []].append(dropped) }
    var storages: [OutputStorage] = []
    var tensors: [TensorInfo] = []
    var order: [String] = []
    var bytes: Int64 = 0
    var seen = Set<String>()
    for tensor in source.tensors {
      guard seen.insert(tensor.name).inserted else {
        throw CheckpointError(.invalidFormat, path: input, "tensor name '\(tensor.name)' appears twice")
      }
      let key = String(storages.count)
      let outType = dtype.outputDType(for: tensor.dtype)
      let src = try castSource(source, tensor, dtype: dtype)
      storages.append(OutputStorage(key: key, dtype: outType, source: src))
      bytes += src.byteCount
      for name in [tensor.name] + (aliasesOf[tensor.name] ?? []).sorted() {
        tensors.append(
          TensorInfo(
            name: name, dtype: outType, shape: tensor.shape, strides: TensorInfo.contiguousStrides(tensor.shape),
            storageKey: key, storageOffset: 0))
        order.append(name)
      }
    }
    let archive = WeightNaming.archiveName(for: OutputFile.split(output).1)
    return FileConversion(
      input: input, output: output, expected: expected(in: source),
      content: .torch(storages: storages, tensors: tensors, archiveName: archive), aliases: aliases, names: order,
      uniqueBytes: bytes, dtype: dtype)
  }
}
