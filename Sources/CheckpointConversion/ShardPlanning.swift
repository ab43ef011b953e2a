import CheckpointFormats

/// Splitting a converted weight set into shards of at most `max_shard_size` bytes, the way transformers'
/// `save_pretrained` does it (huggingface_hub's `split_state_dict_into_shards_factory`): tensors in state
/// dict order; a tensor larger than the limit gets a shard of its own (placed before the shard being
/// filled); otherwise a tensor that would tip the current shard over the limit starts a new one. Names that
/// share a tensor (tied weights) are placed with it, whatever their order, and add no size. One shard is
/// written as `model.safetensors` / `pytorch_model.bin` without an index; several as
/// `model-00001-of-0000N.safetensors` with `model.safetensors.index.json`.
public enum ShardPlanning {
  /// One unit the splitter places: a tensor written once and every name that must stay in its shard.
  struct Unit {
    var source: StateDict
    /// The view that is written, under its own name.
    var tensor: TensorInfo
    /// Other names for the same tensor: written as safetensors `__metadata__` aliases, or as torch names
    /// sharing its storage.
    var aliases: [String]
    /// Bytes in the output dtype.
    var bytes: Int64
  }

  /// The output stem (`model` / `pytorch_model`) if `set` holds a transformers model's weights, which
  /// `max_shard_size` reshards; nil for adapters and other state dicts (their loaders expect one file).
  static func reshardableStem(of set: WeightSet, to target: WeightFormat) -> String? {
    guard let first = set.files.first, let output = WeightNaming.outputName(for: first, to: target) else {
      return nil
    }
    let stem = shardStem(WeightNaming.archiveName(for: output))
    return stem == "model" || stem == "pytorch_model" ? stem : nil
  }

  /// `model-00001-of-00003` -> `model`; other names unchanged.
  static func shardStem(_ name: String) -> String {
    let parts = name.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count >= 4, parts[parts.count - 2] == "of" else { return name }
    let numbers = [parts[parts.count - 3], parts[parts.count - 1]]
    guard numbers.allSatisfy({ $0.count == 5 && $0.allSatisfy(\.isNumber) }) else { return name }
    return parts.dropLast(3).joined(separator: "-")
  }

  /// The shards as lists of unit positions, in the order huggingface_hub builds them.
  public static func split(sizes: [Int64], limit: Int64) -> [[Int]] {
    var shards: [[Int]] = []
    var current: [Int] = []
    var currentSize: Int64 = 0
    for (position, size) in sizes.enumerated() {
      if size > limit {
        shards.append([position])
        continue
      }
      if currentSize + size > limit {
        shards.append(current)
        current = []
        currentSize = 0
      }
      current.append(position)
      currentSize += size
    }
    if !current.isEmpty { shards.append(current) }
    return shards
  }

  /// The shard file names `save_pretrained` uses: `stem.ext` for one shard, `stem-0000i-of-0000n.ext` otherwise.
  public static func shardNames(stem: String, ext: String, count: Int) -> [String] {
    guard count > 1 else { return [stem + ext] }
    func five(_ value: Int) -> String {
      let digits = String(value)
      return String(repeating: "0", count: Swift.max(0, 5 - digits.count)) + digits
    }
    return (1...count).map { "\(stem)-\(five($0))-of-\(five(count))\(ext)" }
  }

  /// The units of one source file, in its order.
  static func units(of source: StateDict, input: String, target: WeightFormat, dtype: CastTarget) throws -> [Unit] {
    var units: [Unit] = []
    var seen = Set<String>()
    let aliases: [String: String]
    let written: [TensorInfo]
    switch source.format {
    case .torch:
      aliases = AliasDetection.exactAliases(tensors: source.tensors, storages: source.storages)
      written = source.tensors.filter { aliases[$0.name] == nil }
    case .safetensors:
      aliases = AliasDetection.aliases(fromMetadata: source.metadata, tensorNames: Set(source.tensors.map(\.name)))
      written = source.tensors
    }
    var aliasesOf: [String: [String]] = [:]
    for (dropped, kept) in aliases { aliasesOf[kept, default: []].append(dropped) }
    for tensor in written {
      guard seen.insert(tensor.name).inserted else {
        throw CheckpointError(.invalidFormat, path: input, "tensor name '\(tensor.name)' appears twice")
      }
      let bytes = Int64(tensor.elementCount) * Int64(dtype.outputDType(for: tensor.dtype).byteSize)
      units.append(
        Unit(source: source, tensor: tensor, aliases: (aliasesOf[tensor.name] ?? []).sorted(), bytes: bytes))
    }
    return units
  }

  /// Plans one output shard holding `units`.
  static func file(
    _ units: [Unit], input: String, output: String, target: WeightFormat, dtype: CastTarget
  ) throws -> FileConversion {
    var expected: [FoundTensor] = []
    var names: [String] = []
    var aliases: [String: String] = [:]
    var bytes: Int64 = 0
    for unit in units {
      bytes += unit.bytes
      for name in [unit.tensor.name] + unit.aliases {
        var view = unit.tensor
        view.name = name
        expected.append(FoundTensor(stateDict: unit.source, view: view))
        if name != unit.tensor.name { aliases[name] = unit.tensor.name }
      }
    }
    let content: FileConversion.Content
    switch target {
    case .safetensors:
      var tensors: [OutputTensor] = []
      for unit in units {
        let source = try FileConversion.castSource(unit.source, unit.tensor, dtype: dtype)
        tensors.append(
          OutputTensor(
            name: unit.tensor.name, dtype: dtype.outputDType(for: unit.tensor.dtype), shape: unit.tensor.shape,
            source: source))
      }
      var metadata = aliases
      metadata["format"] = "pt"
      content = .safetensors(tensors: tensors, metadata: metadata)
      names = tensors.map(\.name) + aliases.keys.sorted()
    case .torch:
      var storages: [OutputStorage] = []
      var tensors: [TensorInfo] = []
      for unit in units {
        let key = String(storages.count)
        let outType = dtype.outputDType(for: unit.tensor.dtype)
        storages.append(
          OutputStorage(
            key: key, dtype: outType, source: try FileConversion.castSource(unit.source, unit.tensor, dtype: dtype)))
        for name in [unit.tensor.name] + unit.aliases {
          tensors.append(
            TensorInfo(
              name: name, dtype: outType, shape: unit.tensor.shape,
              strides: TensorInfo.contiguousStrides(unit.tensor.shape), storageKey: key, storageOffset: 0))
          names.append(name)
        }
      }
      let archive = WeightNaming.archiveName(for: OutputFile.split(output).1)
      content = .torch(storages: storages, tensors: tensors, archiveName: archive)
    }
    return FileConversion(
      input: input, output: output, expected: expected, content: content, aliases: aliases, names: names,
      uniqueBytes: bytes, dtype: dtype)
  }
}

extension ConversionPlan {
  /// Plans a weight set rewritten into shards of at most `limit` bytes (see `ShardPlanning`).
  mutating func addResharded(_ set: WeightSet, stem: String, limit: Int64) throws {
    var units: [ShardPlanning.Unit] = []
    var inputs: [String] = []
    var seen = Set<String>()
    for name in set.files {
      let input = CheckpointScanner.join(folder, name)
      let source = try WeightFile.open(path: input)
      for unit in try ShardPlanning.units(of: source, input: input, target: target, dtype: dtype) {
        for name in [unit.tensor.name] + unit.aliases where !seen.insert(name).inserted {
          throw CheckpointError(
            .invalidFormat, path: input, "tensor name '\(name)' appears in more than one file of the set")
        }
        units.append(unit)
        inputs.append(input)
      }
    }
    guard !units.isEmpty else { return }
    let ext = target == .safetensors ? ".safetensors" : ".bin"
    let shards = ShardPlanning.split(sizes: units.map(\.bytes), limit: limit)
    let names = ShardPlanning.shardNames(stem: stem, ext: ext, count: shards.count)
    var weightMap: [String: String] = [:]
    var parameters = 0
    var total: Int64 = 0
    for (positions, shardName) in zip(shards, names) {
      let shardUnits = positions.map { units[$0] }
      let file = try ShardPlanning.file(
        shardUnits, input: inputs[positions[0]], output: CheckpointScanner.join(outputFolder, shardName),
        target: target, dtype: dtype)
      for name in file.names { weightMap[name] = shardName }
      parameters += shardUnits.reduce(0) { $0 + $1.tensor.elementCount }
      total += file.uniqueBytes
      files.append(file)
    }
    let sourceIndex = set.indexName.map { CheckpointScanner.join(folder, $0) }
    guard shards.count > 1 else {
      if let sourceIndex { retiredIndexes.append(sourceIndex) }
      return
    }
    // What save_pretrained writes: {"metadata": {"total_parameters": N, "total_size": bytes}, "weight_map": ...}.
    let index = ShardIndex(
      weightMap: weightMap,
      metadata: ["total_parameters": .integer(parameters), "total_size": .integer(Int(total))])
    indexes.append(
      IndexConversion(
        input: sourceIndex, output: CheckpointScanner.join(outputFolder, stem + ext + WeightNaming.indexSuffix),
        index: index))
  }
}
