/// DeepSpeed ZeRO checkpoints (stage 1, 2, 3): `latest` names a tag folder `global_stepN/` holding
/// `*_model_states.pt` and one `*_optim_states.pt` per data-parallel rank.
///
/// `read` gives the model `zero_to_fp32.py` would write (fp32 master weights, buffers, frozen parameters,
/// `shared_params` aliases), as sources that `pread` each parameter's slices from the rank partitions,
/// across rank boundaries. Unlike `zero_to_fp32.py`, ZeRO-1 frozen parameters are kept (their only copy is
/// the model states file's `module`).
public enum ZeroCheckpoint {
  /// The files of one tag.
  public struct Layout: Sendable {
    /// The tag `latest` names (`global_step4`).
    public var tag: String
    /// The tag folder.
    public var tagFolder: String
    /// `*_model_states.pt`, natural order.
    public var modelFiles: [String]
    /// `*_optim_states.pt`, natural order (one per rank when complete).
    public var optimFiles: [String]
  }

  /// True if `folder` looks like a ZeRO checkpoint (checked without reading any pickle): a `global_step*`
  /// folder with rank files, or a `latest` file naming a folder with rank files. A stray `latest` alone is
  /// not enough.
  public static func looksLike(folder: String) -> Bool {
    if !tagFolders(folder).isEmpty { return true }
    guard let tag = try? latestTag(folder: folder) else { return false }
    return (DistributedFolder.names(DistributedFolder.join(folder, tag)) ?? []).contains {
      $0.hasSuffix("_optim_states.pt") || $0.hasSuffix("_model_states.pt")
    }
  }

  /// `global_step*` folders holding `*_optim_states.pt` files.
  static func tagFolders(_ folder: String) -> [String] {
    (DistributedFolder.names(folder) ?? []).filter { name in
      name.hasPrefix("global_step") && DistributedFolder.isDirectory(DistributedFolder.join(folder, name))
        && (DistributedFolder.names(DistributedFolder.join(folder, name)) ?? []).contains {
          $0.hasSuffix("_optim_states.pt")
        }
    }.sorted(by: DistributedFolder.naturalLess)
  }

  /// The tag `latest` names (trimmed), checked to be a plain folder name.
  public static func latestTag(folder: String) throws -> String {
    let path = DistributedFolder.join(folder, "latest")
    let file = try ReadableFile(path: path)
    guard file.size <= 4096 else { throw CheckpointError(.invalidFormat, path: path, "is too large for a tag") }
    let bytes = try file.readBytes(at: 0, count: Int(file.size))
    let text = String(decoding: bytes, as: UTF8.self).filter { !$0.isWhitespace }
    guard !text.isEmpty, !text.contains("/"), text != ".", text != ".." else {
      throw CheckpointError(.invalidFormat, path: path, "does not name a tag folder ('\(text)')")
    }
    return text
  }

  /// The tag folder and its rank files, without reading them.
  public static func layout(folder: String) throws -> Layout {
    let tag = try latestTag(folder: folder)
    let tagFolder = DistributedFolder.join(folder, tag)
    guard let names = DistributedFolder.names(tagFolder), DistributedFolder.isDirectory(tagFolder) else {
      throw CheckpointError(
        .invalidFormat, path: DistributedFolder.join(folder, "latest"), "names tag '\(tag)', which is not a folder")
    }
    let sorted = names.filter { !$0.hasPrefix(".") }.sorted(by: DistributedFolder.naturalLess)
    return Layout(
      tag: tag, tagFolder: tagFolder,
      modelFiles: sorted.filter { $0.hasSuffix("_model_states.pt") }.map { DistributedFolder.join(tagFolder, $0) },
      optimFiles: sorted.filter { $0.hasSuffix("_optim_states.pt") }.map { DistributedFolder.join(tagFolder, $0) })
  }

  /// One rank's optimizer file: what consolidation needs of it.
  struct OptimState {
    var file: DistributedPickleFile
    var stage: Int
    var partitionCount: Int
    /// The fp32 flat partition of each param group, in file bytes.
    var groups: [FilePiece]
    /// Element counts of `groups`.
    var groupElements: [Int64]
    var alignmentPaddings: [[Int]]?
  }

  static func readOptim(_ path: String) throws -> OptimState {
    let file = try DistributedPickleFile.read(path: path)
    let access = PickleAccess(path: path)
    let root = try access.dict(file.root, "the file")
    let osd = try access.dict(root.value(forKey: "optimizer_state_dict"), "optimizer_state_dict")
    guard let stageValue = osd.value(forKey: "zero_stage") else {
      throw access.fail("is not a ZeRO optimizer file: optimizer_state_dict has no zero_stage")
    }
    let stageRecord = try access.record(stageValue, "deepspeed.runtime.zero.config.ZeroStageEnum", "zero_stage")
    let stage = try access.int(stageRecord.args.first, "zero_stage")
    guard (1...3).contains(stage) else { throw access.fail("zero_stage \(stage) is not 1, 2 or 3") }
    let partitionValue = osd.value(forKey: "partition_count")
    let partitionCount: Int
    if case .int = partitionValue {
      partitionCount = try access.int(partitionValue, "partition_count")
    } else {
      partitionCount =
        try access.list(partitionValue, "partition_count").map { try access.int($0, "partition_count") }
        .max() ?? 0
    }
    guard partitionCount >= 1 else { throw access.fail("partition_count is \(partitionCount)") }
    let key = stage <= 2 ? "single_partition_of_fp32_groups" : "fp32_flat_groups"
    var groups: [FilePiece] = []
    var elements: [Int64] = []
    for (index, value) in try access.list(osd.value(forKey: key), key).enumerated() {
      let tensor = try access.tensor(value, "\(key)[\(index)]")
      guard tensor.shape.count == 1, tensor.dtype == .f32 else {
        throw access.fail("\(key)[\(index)] is \(tensor.dtype.torchName) \(tensor.shape), not a flat fp32 vector")
      }
      groups.append(try file.piece(tensor, what: "\(key)[\(index)]"))
      elements.append(Int64(tensor.shape[0]))
    }
    var paddings: [[Int]]?
    if stage <= 2, let value = osd.value(forKey: "param_alignment_paddings"), case .list = value {
      paddings = try access.list(value, "param_alignment_paddings").map { group in
        try access.list(group, "param_alignment_paddings").map { try access.int($0, "param_alignment_paddings") }
      }
    }
    return OptimState(
      file: file, stage: stage, partitionCount: partitionCount, groups: groups, groupElements: elements,
      alignmentPaddings: paddings)
  }

  /// One model states file: shapes, buffers, frozen fragments, aliases.
  struct ModelState {
    var file: DistributedPickleFile
    var module: [(String, TensorInfo)]
    var bufferNames: Set<String>
    var paramShapes: [[(String, [Int])]]
    var frozenShapes: [(String, [Int])]?
    var frozenFragments: [String: TensorInfo]
    var sharedParams: [(String, String)]
  }

  static func readModel(_ path: String) throws -> ModelState {
    let file = try DistributedPickleFile.read(path: path)
    let access = PickleAccess(path: path)
    let root = try access.dict(file.root, "the file")
    guard let buffersValue = root.value(forKey: "buffer_names") else {
      throw access.fail("is not a ZeRO model states file: no buffer_names")
    }
    let bufferNames = Set(try access.list(buffersValue, "buffer_names").map { try access.string($0, "buffer_names") })
    var module: [(String, TensorInfo)] = []
    if let moduleDict = try access.optionalDict(root.value(forKey: "module"), "module") {
      for (name, value) in try access.stringEntries(moduleDict, "module") {
        var tensor = try access.tensor(value, "module['\(name)']")
        tensor.name = name
        module.append((name, tensor))
      }
    }
    let paramShapes = try access.list(root.value(forKey: "param_shapes"), "param_shapes").map { group in
      try access.stringEntries(try access.dict(group, "param_shapes group"), "param_shapes").map { name, shape in
        (name, try access.shape(shape, "param_shapes['\(name)']"))
      }
    }
    var frozenShapes: [(String, [Int])]?
    if let frozen = try access.optionalDict(root.value(forKey: "frozen_param_shapes"), "frozen_param_shapes") {
      frozenShapes = try access.stringEntries(frozen, "frozen_param_shapes").map { name, shape in
        (name, try access.shape(shape, "frozen_param_shapes['\(name)']"))
      }
    }
    var fragments: [String: TensorInfo] = [:]
    if let frozen = try access.optionalDict(root.value(forKey: "frozen_param_fragments"), "frozen_param_fragments") {
      for (name, value) in try access.stringEntries(frozen, "frozen_param_fragments") {
        var tensor = try access.tensor(value, "frozen_param_fragments['\(name)']")
        tensor.name = name
        fragments[name] = tensor
      }
    }
    var shared: [(String, String)] = []
    if let sharedDict = try access.optionalDict(root.value(forKey: "shared_params"), "shared_params") {
      shared = try access.stringEntries(sharedDict, "shared_params").map { alias, target in
        (alias, try access.string(target, "shared_params['\(alias)']"))
      }
    }
    return ModelState(
      file: file, module: module, bufferNames: bufferNames, paramShapes: paramShapes, frozenShapes: frozenShapes,
      frozenFragments: fragments, sharedParams: shared)
  }

  /// Reads the checkpoint `latest` names in `folder` and lays out the consolidated model.
  public static func read(folder: String) throws -> DistributedModel {
    let layout = try layout(folder: folder)
    if let parallel = (layout.modelFiles + layout.optimFiles).first(where: {
      !$0.hasSuffix("mp_rank_00_model_states.pt")
        && !$0.hasSuffix("mp_rank_00_optim_states.pt")
    }) {
      throw CheckpointError(
        .unsupported, path: parallel,
        "tensor or pipeline parallel ZeRO checkpoints (mp_rank other than 00) are not supported")
    }
    guard let firstOptim = layout.optimFiles.first else {
      throw CheckpointError(.invalidFormat, path: layout.tagFolder, "has no *_optim_states.pt file")
    }
    let first = try readOptim(firstOptim)
    let worldSize = first.partitionCount
    guard layout.optimFiles.count == worldSize else {
      throw CheckpointError(
        .invalidFormat, path: layout.tagFolder,
        "expected \(worldSize) *_optim_states.pt files (partition_count) but found \(layout.optimFiles.count)")
    }
    var optims = [first]
    for path in layout.optimFiles.dropFirst() {
      let state = try readOptim(path)
      guard state.stage == first.stage, state.groups.count == first.groups.count else {
        throw CheckpointError(
          .invalidFormat, path: path, "disagrees with \(firstOptim) on the ZeRO stage or the number of param groups")
      }
      optims.append(state)
    }
    let stage = first.stage
    let modelCount = stage == 3 ? worldSize : 1
    guard layout.modelFiles.count >= modelCount else {
      throw CheckpointError(
        .invalidFormat, path: layout.tagFolder,
        "expected \(modelCount) *_model_states.pt file(s) but found \(layout.modelFiles.count)")
    }
    let models = try layout.modelFiles.prefix(modelCount).map(readModel)
    let builder = ZeroLayoutBuilder(stage: stage, worldSize: worldSize, models: models, optims: optims)
    let (tensors, aliases) = try builder.build()
    return DistributedModel(
      kind: .zero(stage: stage), folder: layout.tagFolder, worldSize: worldSize, tensors: tensors, aliases: aliases,
      files: Array(layout.modelFiles.prefix(modelCount)) + layout.optimFiles)
  }
}
