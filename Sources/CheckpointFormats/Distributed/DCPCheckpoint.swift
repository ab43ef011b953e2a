/// PyTorch Distributed Checkpoint folders: `.metadata` (a pickle of `Metadata`) and `__R_F.distcp` files
/// whose items are complete `torch.save` archives, one per chunk.
///
/// `read` gives the model `dcp_to_torch_save` would write: every tensor of `state_dict_metadata` in order,
/// its chunks (any rectangular split, empty shards allowed, replicated tensors stored once on any rank) streamed
/// from the rank files. accelerate/Trainer folders save `{"model": state_dict}`: their `model.` level is
/// stripped (the planner path is `("model", fqn)`). Non-tensor entries (`BytesStorageMetadata`) are skipped.
public enum DCPCheckpoint {
  /// True if `folder` holds a `.metadata` file or `*.distcp` files.
  public static func looksLike(folder: String) -> Bool {
    if DistributedFolder.isFile(DistributedFolder.join(folder, ".metadata")) { return true }
    return (DistributedFolder.names(folder) ?? []).contains { $0.hasSuffix(".distcp") }
  }

  /// DCP folders inside a checkpoint folder: the folder itself, or subfolders such as `pytorch_model_fsdp_0`
  /// (accelerate's optimizer folders, `optimizer_*`, are not models).
  public static func modelFolders(in folder: String) -> [String] {
    if looksLike(folder: folder) { return [folder] }
    return (DistributedFolder.names(folder) ?? []).filter { name in
      !name.hasPrefix(".") && !name.hasPrefix("optimizer") && looksLike(folder: DistributedFolder.join(folder, name))
    }.sorted(by: DistributedFolder.naturalLess).map { DistributedFolder.join(folder, $0) }
  }

  struct Chunk {
    var offsets: [Int]
    var sizes: [Int]
  }

  struct StorageLocation {
    var relativePath: String
    var offset: Int64
    var length: Int64
  }

  struct TensorEntry {
    var fqn: String
    var dtype: DType
    var size: [Int]
    var chunks: [Chunk]
  }

  /// The parsed `.metadata`: tensors in order, planner paths, and where each chunk's item is.
  struct MetadataFile {
    var tensors: [TensorEntry]
    var plannerPaths: [String: [String]]
    var storage: [String: StorageLocation]
    static func key(_ fqn: String, _ offsets: [Int]) -> String {
      fqn + "@" + offsets.map(String.init).joined(separator: ",")
    }
  }

  static func readMetadata(path: String) throws -> MetadataFile {
    let file = try ReadableFile(path: path)
    var limits = TorchReader.Limits()
    limits.maxPickleBytes = 256 << 20
    let input = PickleInput(file: file, start: 0, end: file.size, cap: limits.maxPickleBytes)
    let machine = PickleMachine(input: input, limits: limits)
    machine.distributedGlobals = true
    let root = try machine.run()
    let a = PickleAccess(path: path)
    let metadata = try a.state(
      try a.record(root, "torch.distributed.checkpoint.metadata.Metadata", "the root"), "Metadata")
    var tensors: [TensorEntry] = []
    let sdm = try a.dict(metadata.value(forKey: "state_dict_metadata"), "state_dict_metadata")
    for (fqn, value) in try a.stringEntries(sdm, "state_dict_metadata") {
      guard case .object(let record) = value else { throw a.fail("state_dict_metadata['\(fqn)'] is \(value.kind)") }
      if record.type == "torch.distributed.checkpoint.metadata.BytesStorageMetadata" { continue }
      guard record.type == "torch.distributed.checkpoint.metadata.TensorStorageMetadata" else {
        throw a.fail("state_dict_metadata['\(fqn)'] is a \(record.type)")
      }
      let state = try a.state(record, fqn)
      let properties = try a.record(
        state.value(forKey: "properties"), "torch.distributed.checkpoint.metadata.TensorProperties", "\(fqn) properties"
      )
      let dtype = try dtypeOf(properties, a, fqn)
      let size = try a.shape(state.value(forKey: "size"), "\(fqn) size")
      let chunks = try a.list(state.value(forKey: "chunks"), "\(fqn) chunks").map { value in
        let chunk = try a.state(
          try a.record(value, "torch.distributed.checkpoint.metadata.ChunkStorageMetadata", "\(fqn) chunk"), "chunk")
        return Chunk(
          offsets: try a.shape(chunk.value(forKey: "offsets"), "\(fqn) chunk offsets"),
          sizes: try a.shape(chunk.value(forKey: "sizes"), "\(fqn) chunk sizes"))
      }
      tensors.append(TensorEntry(fqn: fqn, dtype: dtype, size: size, chunks: chunks))
    }
    var planner: [String: [String]] = [:]
    if let pd = try a.optionalDict(metadata.value(forKey: "planner_data"), "planner_data") {
      for (fqn, value) in try a.stringEntries(pd, "planner_data") {
        if let items = try? a.list(value, "planner path") {
          planner[fqn] = items.compactMap(\.asString)
        }
      }
    }
    var storage: [String: StorageLocation] = [:]
    let sd = try a.dict(metadata.value(forKey: "storage_data"), "storage_data")
    for entry in sd.entries {
      let index = try a.state(
        try a.record(entry.key, "torch.distributed.checkpoint.metadata.MetadataIndex", "storage_data key"),
        "MetadataIndex")
      let fqn = try a.string(index.value(forKey: "fqn"), "MetadataIndex fqn")
      let offsets: [Int]
      switch index.value(forKey: "offset") {
      case nil, .none?: offsets = []
      case let value: offsets = try a.shape(value, "MetadataIndex offset")
      }
      let info = try a.state(
        try a.record(entry.value, "torch.distributed.checkpoint.filesystem._StorageInfo", "storage_data value"),
        "_StorageInfo")
      let relative = try a.string(info.value(forKey: "relative_path"), "relative_path")
      guard !relative.contains("/"), relative != ".", relative != ".." else {
        throw a.fail("storage of '\(fqn)' names '\(relative)', which is not a file of the folder")
      }
      if let transforms = info.value(forKey: "transform_descriptors") {
        if case .none = transforms {
        } else if let list = try? a.list(transforms, "transform_descriptors"), list.isEmpty {
        } else {
          throw CheckpointError(.unsupported, path: path, "storage of '\(fqn)' uses transforms (compression)")
        }
      }
      let offset = try a.int(info.value(forKey: "offset"), "storage offset of '\(fqn)'")
      let length = try a.int(info.value(forKey: "length"), "storage length of '\(fqn)'")
      storage[MetadataFile.key(fqn, offsets)] = StorageLocation(
        relativePath: relative, offset: Int64(offset), length: Int64(length))
    }
    return MetadataFile(tensors: tensors, plannerPaths: planner, storage: storage)
  }

  /// The dtype of `TensorProperties` (tuple state: dtype first; or a dict with `dtype`).
  static func dtypeOf(_ properties: PickleObject, _ a: PickleAccess, _ fqn: String) throws -> DType {
    var value: PickleValue?
    switch properties.state {
    case .tuple(let t)?: value = t.items.first
    case .dict(let d)?: value = d.value(forKey: "dtype")
    default: value = nil
    }
    guard case .global("torch", let name)? = value else {
      throw a.fail("'\(fqn)' has no dtype in its TensorProperties")
    }
    guard let dtype = DType(torchName: name) else {
      throw CheckpointError(.unsupported, path: a.path, "'\(fqn)' has unsupported dtype torch.\(name)")
    }
    return dtype
  }

  /// Reads `.metadata` and lays out every tensor's chunks.
  public static func read(folder: String) throws -> DistributedModel {
    let metadataPath = DistributedFolder.join(folder, ".metadata")
    guard DistributedFolder.isFile(metadataPath) else {
      throw CheckpointError(.invalidFormat, path: metadataPath, "is missing: the checkpoint is incomplete")
    }
    let metadata = try readMetadata(path: metadataPath)
    var files: [String: ReadableFile] = [:]
    func open(_ relative: String) throws -> ReadableFile {
      if let known = files[relative] { return known }
      let file = try ReadableFile(path: DistributedFolder.join(folder, relative))
      files[relative] = file
      return file
    }
    let strip =
      !metadata.tensors.isEmpty
      && metadata.tensors.allSatisfy { entry in
        let path = metadata.plannerPaths[entry.fqn] ?? []
        return path.count == 2 && path[0] == "model"
      }
    var tensors: [DistributedTensor] = []
    for entry in metadata.tensors {
      let name = strip ? metadata.plannerPaths[entry.fqn]?[1] ?? entry.fqn : entry.fqn
      let source = try chunkSource(entry, metadata: metadata, metadataPath: metadataPath, open: open)
      tensors.append(DistributedTensor(name: name, dtype: entry.dtype, shape: entry.size, source: source))
    }
    var ranks = Set<Int>()
    for name in DistributedFolder.names(folder) ?? [] where name.hasPrefix("__") && name.hasSuffix(".distcp") {
      if let rank = Int(name.dropFirst(2).split(separator: "_").first ?? "") { ranks.insert(rank) }
    }
    return DistributedModel(
      kind: .dcp, folder: folder, worldSize: ranks.count, tensors: tensors, aliases: [],
      files: [metadataPath]
        + files.keys.sorted(by: DistributedFolder.naturalLess).map { DistributedFolder.join(folder, $0) })
  }

  /// The source of one tensor in C order. Its chunks must tile it exactly (no gaps, no overlaps); any
  /// rectangular split works: dim-0 splits (FSDP) become a plain concatenation of the chunks, splits of
  /// later dimensions (tensor parallel) a `ChunkGridSource` that reads each chunk's run of every row.
  static func chunkSource(
    _ entry: TensorEntry, metadata: MetadataFile, metadataPath: String, open: (String) throws -> ReadableFile
  ) throws -> any TensorSource {
    let fail = { (message: String) in
      CheckpointError(.invalidFormat, path: metadataPath, "'\(entry.fqn)': \(message)")
    }
    let rank = entry.size.count
    guard entry.chunks.count <= 16384 else {
      throw CheckpointError(.limitExceeded, path: metadataPath, "'\(entry.fqn)' has \(entry.chunks.count) chunks")
    }
    var chunks: [Chunk] = []
    for chunk in entry.chunks {
      guard chunk.offsets.count == rank, chunk.sizes.count == rank else {
        throw fail("a chunk's rank differs from the tensor's \(entry.size)")
      }
      for d in 0..<rank where chunk.offsets[d] + chunk.sizes[d] > entry.size[d] {
        throw fail("chunk at \(chunk.offsets) of size \(chunk.sizes) lies outside the tensor \(entry.size)")
      }
      if elementCount(chunk.sizes) > 0 { chunks.append(chunk) }
    }
    // Exact tiling: no two chunks intersect, and together they hold every element.
    for i in chunks.indices {
      for j in chunks.indices where j > i {
        let (a, b) = (chunks[i], chunks[j])
        let intersects = (0..<rank).allSatisfy { d in
          a.offsets[d] < b.offsets[d] + b.sizes[d] && b.offsets[d] < a.offsets[d] + a.sizes[d]
        }
        if intersects { throw fail("chunks overlap (at \(a.offsets) and \(b.offsets))") }
      }
    }
    let covered = chunks.reduce(0) { $0 + elementCount($1.sizes) }
    let total = elementCount(entry.size)
    guard covered == total else {
      throw fail(covered == 0 ? "no chunk holds its data" : "chunks leave a gap (\(covered) of \(total) elements)")
    }
    // The last dimension any chunk splits; dimensions after it are whole in every chunk.
    let split = (0..<rank).last { d in chunks.contains { $0.offsets[d] != 0 || $0.sizes[d] != entry.size[d] } }
    var located: [(chunk: Chunk, piece: FilePiece)] = []
    for chunk in chunks {
      guard let location = metadata.storage[MetadataFile.key(entry.fqn, chunk.offsets)] else {
        throw fail("chunk at \(chunk.offsets) has no storage entry")
      }
      let file = try open(location.relativePath)
      let (end, overflow) = location.offset.addingReportingOverflow(location.length)
      guard !overflow, location.offset >= 0, end <= file.size else {
        throw CheckpointError(
          .truncated, path: file.path,
          "item of '\(entry.fqn)' at bytes \(location.offset)..<\(end) lies outside the file (\(file.size) bytes)")
      }
      let item = try DistributedPickleFile.read(file: file, start: location.offset, end: end)
      guard case .tensor(var tensor) = item.root else {
        throw CheckpointError(
          .invalidFormat, path: file.path, "item of '\(entry.fqn)' holds a \(item.root.kind), not a tensor")
      }
      tensor.name = entry.fqn
      guard tensor.dtype == entry.dtype, tensor.shape == chunk.sizes else {
        throw CheckpointError(
          .invalidFormat, path: file.path,
          "item of '\(entry.fqn)' is \(tensor.dtype.torchName) \(tensor.shape), .metadata says "
            + "\(entry.dtype.torchName) \(chunk.sizes)")
      }
      located.append((chunk, try item.piece(tensor, what: "'\(entry.fqn)' chunk at \(chunk.offsets)")))
    }
    guard let split, split > 0 else {
      // Whole, or split along dim 0 only: the chunks in row order, back to back.
      located.sort { ($0.chunk.offsets.first ?? 0) < ($1.chunk.offsets.first ?? 0) }
      return PieceSource(pieces: located.map(\.piece))
    }
    return ChunkGridSource(
      size: entry.size, split: split, itemSize: entry.dtype.byteSize,
      chunks: located.map { ChunkGridSource.Located(offsets: $0.chunk.offsets, sizes: $0.chunk.sizes, piece: $0.piece) }
    )
  }
}

/// A tensor tiled by chunks that split a dimension after the first: streamed in C order, row by row over
/// dimensions `0...split`, each row's run read from the chunk that holds it (no buffering beyond the
/// caller's scratch).
struct ChunkGridSource: TensorSource {
  struct Located {
    var offsets: [Int]
    var sizes: [Int]
    var piece: FilePiece
  }

  let size: [Int]
  /// The last split dimension (> 0).
  let split: Int
  let itemSize: Int
  let chunks: [Located]

  init(size: [Int], split: Int, itemSize: Int, chunks: [Located]) {
    self.size = size
    self.split = split
    self.itemSize = itemSize
    self.chunks = chunks.sorted { $0.offsets.lexicographicallyPrecedes($1.offsets) }
  }

  var byteCount: Int64 { Int64(elementCount(size)) * Int64(itemSize) }

  func stream(scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
    guard byteCount > 0 else { return }
    let inner = size[(split + 1)...].reduce(1, *)
    var index = [Int](repeating: 0, count: split)  // position over dimensions 0..<split
    while true {
      // Every chunk holding this row, in order along the split dimension.
      for chunk in chunks
      where (0..<split).allSatisfy({ d in
        chunk.offsets[d] <= index[d] && index[d] < chunk.offsets[d] + chunk.sizes[d]
      }) {
        var row = 0
        for d in 0..<split { row = row * chunk.sizes[d] + (index[d] - chunk.offsets[d]) }
        let run = Int64(chunk.sizes[split] * inner * itemSize)
        try FileRangeSource(file: chunk.piece.file, offset: chunk.piece.offset + Int64(row) * run, byteCount: run)
          .stream(scratch: scratch, body)
      }
      var d = split - 1
      while d >= 0 {
        index[d] += 1
        if index[d] < size[d] { break }
        index[d] = 0
        d -= 1
      }
      if d < 0 { return }
    }
  }
}
