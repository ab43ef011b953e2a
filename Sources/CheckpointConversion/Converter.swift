import CLinux
import CheckpointFormats

#if canImport(Glibc)
  import Glibc
#endif

/// Converts a checkpoint folder (or one weight file) between safetensors and torch `.bin`.
///
/// Every output is written under a temporary name in its final folder, verified against the source
/// before anything is committed, and renamed into place only when every file of the checkpoint wrote and
/// verified; on any error every temporary is removed and nothing appears under a final name. The
/// checkpoint folder's access and modification times are restored afterwards (the Trainer rotates
/// checkpoints by mtime). Source files are only read, and removed only when asked and after verification.
public enum Converter {
  /// Plans and runs the conversion of `path`.
  public static func convert(path: String, options: ConversionOptions) throws -> ConversionResult {
    let started = FileSystem.now()
    var info = stat()
    let folder =
      (stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR) ? path : OutputFile.split(path).0
    let times = FileSystem.FolderTimes(path: folder.isEmpty ? "." : folder)
    defer { times?.restore() }
    do {
      let plan = try ConversionPlan.make(path: path, options: options)
      var result = try execute(plan, options: options)
      result.seconds = FileSystem.now() - started
      return result
    } catch let error as CheckpointError {
      if !folder.isEmpty && !FileSystem.exists(folder) {
        throw CheckpointError(.vanished, path: folder, "the checkpoint folder vanished during conversion")
      }
      throw error
    }
  }

  /// Runs a plan made by `ConversionPlan.make`.
  public static func execute(_ plan: ConversionPlan, options: ConversionOptions) throws -> ConversionResult {
    var result = ConversionResult(
      path: plan.path, outcome: plan.outcome, target: plan.target, dtype: plan.dtype, skipped: plan.skipped)
    guard plan.outcome == .converted else { return result }
    if options.removeSource && !options.verify {
      throw CheckpointError(
        .unsupported, path: plan.path, "removing the source weights needs verification; turn verification on")
    }
    var replace: [String: Bool] = [:]
    for output in plan.outputPaths where FileSystem.exists(output) {
      guard options.force || FileSystem.isWrittenByCkptd(output) else {
        throw CheckpointError(
          .exists, path: output,
          "already exists and was not written by ckptd; not overwritten (use --force to replace it)")
      }
      replace[output] = true
    }
    let writeBytes = plan.files.reduce(Int64(0)) { $0 + $1.uniqueBytes }
    let verifyBytes = options.verify ? plan.files.reduce(Int64(0)) { $0 + $1.verifyBytes } : 0
    let monitor = ProgressMonitor(total: writeBytes + verifyBytes, options: options, path: plan.path)
    var pending: [OutputFile] = []
    defer { pending.forEach { $0.abandon() } }
    try StreamBuffer.with { scratch in
      for file in plan.files {
        try monitor.check()
        let output = try OutputFile(
          path: file.output, mode: FileSystem.permissions(of: file.input), sha256: options.hashOutputs)
        pending.append(output)
        // Page cache: the last pass over a source releases what it read (but not the pages that were
        // cached before ckptd opened it), so a conversion does not evict the training job's files.
        // An output may draw on several source shards (resharding), each opened once.
        var seen = Set<ObjectIdentifier>()
        let sources = file.expected.map(\.stateDict.file).filter { seen.insert(ObjectIdentifier($0)).inserted }
        for source in sources { source.dropBehind = !options.verify }
        try write(file, to: output, monitor: monitor, scratch: scratch)
        FileSystem.markWrittenByCkptd(output)
        if options.verify {
          for source in sources { source.dropBehind = true }
          try verify(file, written: output.temporaryPath, dtype: plan.dtype, monitor: monitor, scratch: scratch)
          // The verified output's clean pages go too (the rest after the fsync in `commit`).
          output.releaseCache()
        }
        for source in sources { source.releaseCache() }
      }
      result.sources = try plan.sourcePaths.map { path in
        let size = try ReadableFile(path: path).size
        return .init(
          path: path, bytes: size, sha256: options.hashSources ? try sha256(of: path, scratch: scratch) : nil)
      }
    }
    for index in plan.indexes {
      let output = try OutputFile(
        path: index.output, mode: FileSystem.permissions(of: index.input ?? plan.files.first?.input ?? plan.folder),
        sha256: options.hashOutputs)
      pending.append(output)
      try output.write(index.index.serialized())
      FileSystem.markWrittenByCkptd(output)
    }
    try monitor.checkBeforeCommit()
    result.outputs = pending.map { .init(path: $0.path, bytes: $0.position, sha256: $0.sha256Hex()) }
    try commit(pending, replace: replace)
    pending = []
    result.tensorCount = plan.files.reduce(0) { $0 + $1.names.count }
    result.verified = options.verify
    if options.removeSource {
      // Index files first: a kill part-way then leaves shards without an index, never an index that
      // names a shard already removed (which the next run would refuse).
      for source in plan.sourceIndexPaths + plan.sourceWeightPaths {
        try FileSystem.remove(source)
        result.removedSources.append(source)
      }
    }
    return result
  }

  /// Streams one planned file into its temporary output.
  static func write(
    _ file: FileConversion, to output: OutputFile, monitor: ProgressMonitor, scratch: UnsafeMutableRawBufferPointer
  ) throws {
    switch file.content {
    case .safetensors(let tensors, let metadata):
      let monitored = tensors.map { tensor in
        var copy = tensor
        copy.source = MonitoredSource(inner: tensor.source, monitor: monitor)
        return copy
      }
      try SafetensorsWriter.write(tensors: monitored, metadata: metadata, to: output, scratch: scratch)
    case .torch(let storages, let tensors, let archiveName):
      let monitored = storages.map { storage in
        var copy = storage
        copy.source = MonitoredSource(inner: storage.source, monitor: monitor)
        return copy
      }
      try TorchWriter.write(
        storages: monitored, tensors: tensors, archiveName: archiveName, to: output, scratch: scratch)
    }
  }

  /// Re-reads a written temporary and compares every name with the source (or its cast).
  static func verify(
    _ file: FileConversion, written: String, dtype: CastTarget, monitor: ProgressMonitor,
    scratch: UnsafeMutableRawBufferPointer
  ) throws {
    let reread: StateDict
    do {
      reread = try WeightFile.open(path: written)
    } catch let error as CheckpointError {
      throw CheckpointError(.mismatch, path: file.output, "the written file does not read back: \(error.message)")
    }
    var expected: [ExpectedTensor] = []
    for found in file.expected {
      let view = found.view
      let source = try FileConversion.castSource(found.stateDict, view, dtype: dtype)
      expected.append(
        ExpectedTensor(name: view.name, dtype: dtype.outputDType(for: view.dtype), shape: view.shape, source: source))
    }
    try TensorComparison.check(
      expected: expected, actual: TensorComparison.found(in: reread), label: file.output, scratch: scratch,
      onBytes: { try monitor.advance($0, writing: false) })
  }

  /// Renames every temporary into place. If one rename fails, the outputs already committed that did not
  /// replace an older file are removed again, so that the checkpoint is left as it was.
  static func commit(_ outputs: [OutputFile], replace: [String: Bool]) throws {
    var committed: [String] = []
    for (position, output) in outputs.enumerated() {
      do {
        try output.commit(replace: replace[output.path] ?? false)
        committed.append(output.path)
      } catch {
        for path in committed where replace[path] != true { unlink(path) }
        outputs[(position + 1)...].forEach { $0.abandon() }
        throw error
      }
    }
  }

  /// The SHA-256 of a whole file, read in chunks.
  static func sha256(of path: String, scratch: UnsafeMutableRawBufferPointer) throws -> String {
    let file = try ReadableFile(path: path)
    file.dropBehind = true
    var hasher = StreamingSHA256()
    try FileRangeSource(file: file, offset: 0, byteCount: file.size).stream(scratch: scratch) { chunk in
      hasher.update(chunk)
    }
    return hasher.hexDigest()
  }
}
