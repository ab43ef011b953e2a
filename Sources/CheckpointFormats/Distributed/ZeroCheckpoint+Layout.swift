/// Maps ZeRO flat fp32 partitions to parameters, exactly as `zero_to_fp32.py` does (see
/// reference/distributed-checkpoints.md, "Flat-partition -> parameter mapping").
struct ZeroLayoutBuilder {
  let stage: Int
  let worldSize: Int
  let models: [ZeroCheckpoint.ModelState]
  let optims: [ZeroCheckpoint.OptimState]

  var rank0: ZeroCheckpoint.ModelState { models[0] }

  func fail(_ path: String, _ message: String) -> CheckpointError {
    CheckpointError(.invalidFormat, path: path, message)
  }

  /// Tensors in `zero_to_fp32.py` order (buffers, frozen parameters, trainable parameters), every floating
  /// one as float32 (its default output dtype), and aliases.
  func build() throws -> ([DistributedTensor], [(alias: String, target: String)]) {
    var tensors: [DistributedTensor] = []
    var names = Set<String>()
    func add(_ tensor: DistributedTensor) {
      if names.insert(tensor.name).inserted {
        tensors.append(tensor)
      } else if let index = tensors.firstIndex(where: { $0.name == tensor.name }) {
        tensors[index] = tensor  // a later assignment replaces, as in the Python dict
      }
    }
    // Buffers first, in module order.
    for (name, info) in rank0.module where rank0.bufferNames.contains(name) {
      add(DistributedTensor(name: name, dtype: info.dtype, shape: info.shape, source: try rank0.file.source(info)))
    }
    for tensor in try frozen() { add(tensor) }
    for tensor in try stage == 3 ? trainable3() : trainable12() { add(tensor) }
    // zero_to_fp32.py writes every floating tensor as float32 (buffers and frozen bf16 parameters too).
    tensors = try tensors.map { tensor in
      guard tensor.dtype.isCastableFloat, tensor.dtype != .f32 else { return tensor }
      var cast = tensor
      cast.dtype = .f32
      cast.source = try CastSource(inner: tensor.source, from: tensor.dtype, to: .f32)
      return cast
    }
    var aliases: [(alias: String, target: String)] = []
    for (alias, target) in rank0.sharedParams where names.contains(target) {
      if names.contains(alias) {
        tensors.removeAll { $0.name == alias }
        names.remove(alias)
      }
      aliases.append((alias, target))
    }
    return (tensors, aliases)
  }

  /// Frozen parameters: ZeRO-2 keeps them whole, ZeRO-3 in per-rank fragments; ZeRO-1 does not save them
  /// apart, so they are taken from `module` (where `zero_to_fp32.py` drops them).
  func frozen() throws -> [DistributedTensor] {
    let path = rank0.file.file.path
    guard let shapes = rank0.frozenShapes else {
      guard stage == 1 else { return [] }
      let trainable = Set(rank0.paramShapes.flatMap { $0.map(\.0) })
      let aliases = Set(rank0.sharedParams.map(\.0))
      return try rank0.module.compactMap { name, info in
        guard !trainable.contains(name), !rank0.bufferNames.contains(name), !aliases.contains(name),
          info.elementCount > 0
        else { return nil }
        return DistributedTensor(name: name, dtype: info.dtype, shape: info.shape, source: try rank0.file.source(info))
      }
    }
    return try shapes.map { name, shape in
      let numel = Int64(elementCount(shape))
      if stage <= 2 {
        guard let fragment = rank0.frozenFragments[name] else {
          throw fail(path, "frozen parameter '\(name)' has no entry in frozen_param_fragments")
        }
        guard Int64(fragment.elementCount) == numel else {
          throw fail(
            path,
            "frozen parameter '\(name)' holds \(fragment.elementCount) elements, its shape \(shape) needs \(numel)")
        }
        return DistributedTensor(
          name: name, dtype: fragment.dtype, shape: fragment.shape, source: try rank0.file.source(fragment))
      }
      var pieces: [FilePiece] = []
      var dtype: DType?
      for model in models {
        guard let fragment = model.frozenFragments[name] else {
          throw fail(model.file.file.path, "frozen parameter '\(name)' has no entry in frozen_param_fragments")
        }
        if let known = dtype, known != fragment.dtype {
          throw fail(model.file.file.path, "frozen parameter '\(name)' fragments differ in dtype")
        }
        dtype = fragment.dtype
        pieces.append(try model.file.piece(fragment, what: "frozen_param_fragments['\(name)']"))
      }
      let itemSize = Int64((dtype ?? .f32).byteSize)
      let available = pieces.reduce(Int64(0)) { $0 + $1.byteCount }
      guard available >= numel * itemSize else {
        throw fail(
          path,
          "frozen parameter '\(name)': fragments hold \(available / itemSize) elements, shape \(shape) needs \(numel)")
      }
      let slice = DistributedFolder.slice(pieces, start: 0, count: numel * itemSize)
      return DistributedTensor(name: name, dtype: dtype ?? .f32, shape: shape, source: PieceSource(pieces: slice))
    }
  }

  /// ZeRO-1/2: group g is the concatenation of every rank's partition g; parameters follow one another.
  func trainable12() throws -> [DistributedTensor] {
    let path = rank0.file.file.path
    guard rank0.paramShapes.count == optims[0].groups.count else {
      throw fail(
        path, "param_shapes has \(rank0.paramShapes.count) groups, the optimizer files \(optims[0].groups.count)")
    }
    var result: [DistributedTensor] = []
    for (group, shapes) in rank0.paramShapes.enumerated() {
      let pieces = optims.map { $0.groups[group] }
      let total = optims.reduce(Int64(0)) { $0 + $1.groupElements[group] }
      let paddings = optims[0].alignmentPaddings.map { $0.indices.contains(group) ? $0[group] : [] }
      if let paddings, paddings.count != shapes.count {
        throw fail(
          optims[0].file.file.path,
          "param_alignment_paddings[\(group)] has \(paddings.count) entries for \(shapes.count) parameters")
      }
      var offset: Int64 = 0
      for (index, (name, shape)) in shapes.enumerated() {
        let numel = Int64(elementCount(shape))
        guard offset + numel <= total else {
          throw fail(
            path,
            "partitions of group \(group) hold \(total) elements but param_shapes needs more (at '\(name)'); "
              + "a rank file is missing, truncated or from another step")
        }
        result.append(
          DistributedTensor(
            name: name, dtype: .f32, shape: shape,
            source: PieceSource(pieces: DistributedFolder.slice(pieces, start: offset * 4, count: numel * 4))))
        offset += numel + Int64(paddings?[index] ?? 0)
      }
      let align = Int64(2 * worldSize)
      func aligned(_ x: Int64) -> Int64 { (x + align - 1) / align * align }
      guard aligned(offset) == aligned(total) else {
        throw fail(
          path, "param_shapes of group \(group) use \(offset) elements but the partitions hold \(total)")
      }
    }
    return result
  }

  /// ZeRO-3: every parameter takes ceil(numel / world size) elements at the same offset of every rank's
  /// flat partition (its groups concatenated); the parameter is the ranks' slices concatenated, cut to size.
  func trainable3() throws -> [DistributedTensor] {
    let rankPieces = optims.map(\.groups)
    let length = optims[0].groupElements.reduce(0, +)
    for optim in optims where optim.groupElements.reduce(0, +) != length {
      throw fail(optim.file.file.path, "holds \(optim.groupElements.reduce(0, +)) fp32 elements, rank 0 \(length)")
    }
    var offset: Int64 = 0
    var result: [DistributedTensor] = []
    let ws = Int64(worldSize)
    for (name, shape) in rank0.paramShapes.flatMap({ $0 }) {
      let numel = Int64(elementCount(shape))
      let part = (numel + ws - 1) / ws
      guard offset + part <= length else {
        throw fail(
          rank0.file.file.path,
          "the flat partitions hold \(length) elements per rank but param_shapes needs more (at '\(name)')")
      }
      var pieces: [FilePiece] = []
      for groups in rankPieces {
        pieces += DistributedFolder.slice(groups, start: offset * 4, count: part * 4)
      }
      result.append(
        DistributedTensor(
          name: name, dtype: .f32, shape: shape,
          source: PieceSource(pieces: DistributedFolder.slice(pieces, start: 0, count: numel * 4))))
      offset += part
    }
    guard offset == length else {
      throw fail(rank0.file.file.path, "param_shapes use \(offset) elements per rank but the partitions hold \(length)")
    }
    return result
  }
}
