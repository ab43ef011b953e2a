/// What kind of distributed checkpoint a folder holds.
public enum DistributedKind: Sendable, Hashable, CustomStringConvertible {
  /// DeepSpeed ZeRO stage 1, 2 or 3 (`latest` + `global_stepN/`).
  case zero(stage: Int)
  /// A PyTorch Distributed Checkpoint (`.metadata` + `*.distcp`), e.g. FSDP's `pytorch_model_fsdp_0/`.
  case dcp

  public var description: String {
    switch self {
    case .zero(let stage): "DeepSpeed ZeRO stage \(stage)"
    case .dcp: "PyTorch Distributed Checkpoint"
    }
  }
}

/// One tensor of the consolidated model: its bytes stream from the rank files.
public struct DistributedTensor: Sendable {
  public var name: String
  public var dtype: DType
  public var shape: [Int]
  /// The tensor's bytes in C order, read slice by slice from the rank files.
  public var source: any TensorSource

  public init(name: String, dtype: DType, shape: [Int], source: any TensorSource) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
    self.source = source
  }

  public var elementCount: Int { shape.reduce(1, *) }
}

/// A distributed checkpoint read into descriptors: the consolidated model, tensor by tensor, as the
/// reference tools (`zero_to_fp32.py`, `dcp_to_torch_save`) would produce it. No tensor data is read.
public struct DistributedModel: Sendable {
  public var kind: DistributedKind
  /// The folder the rank files are in (`global_stepN/`, or the DCP folder).
  public var folder: String
  /// Data-parallel world size (number of ranks).
  public var worldSize: Int
  /// The tensors in the reference tool's order (each stored once).
  public var tensors: [DistributedTensor]
  /// Tied names: alias -> the tensor it shares storage with (ZeRO `shared_params`).
  public var aliases: [(alias: String, target: String)]
  /// Every file the model's bytes come from.
  public var files: [String]

  public init(
    kind: DistributedKind, folder: String, worldSize: Int, tensors: [DistributedTensor],
    aliases: [(alias: String, target: String)], files: [String]
  ) {
    self.kind = kind
    self.folder = folder
    self.worldSize = worldSize
    self.tensors = tensors
    self.aliases = aliases
    self.files = files
  }

  /// Parameters counted once (aliases not counted).
  public var parameterCount: Int { tensors.reduce(0) { $0 + $1.elementCount } }

  /// Every name with its tensor, aliases included, in output order (each alias after its target).
  public var namedTensors: [DistributedTensor] {
    var byName: [String: DistributedTensor] = [:]
    for tensor in tensors { byName[tensor.name] = tensor }
    var result = tensors
    for (alias, target) in aliases {
      guard var tensor = byName[target] else { continue }
      tensor.name = alias
      result.append(tensor)
    }
    return result
  }
}

/// A contiguous byte range of one file: a slice of a rank's partition or a DCP chunk.
public struct FilePiece: Sendable {
  public var file: ReadableFile
  public var offset: Int64
  public var byteCount: Int64

  public init(file: ReadableFile, offset: Int64, byteCount: Int64) {
    self.file = file
    self.offset = offset
    self.byteCount = byteCount
  }
}

/// The concatenation of file pieces (a parameter spread over rank boundaries), streamed piece by piece
/// through the caller's scratch buffer.
public struct PieceSource: TensorSource {
  public let pieces: [FilePiece]
  public let byteCount: Int64

  public init(pieces: [FilePiece]) {
    self.pieces = pieces.filter { $0.byteCount > 0 }
    self.byteCount = pieces.reduce(Int64(0)) { $0 + $1.byteCount }
  }

  public var fileRange: FileRange? {
    guard pieces.count == 1, let only = pieces.first else { return nil }
    return FileRange(file: only.file, offset: only.offset)
  }

  public func stream(
    scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void
  ) throws {
    for piece in pieces {
      try FileRangeSource(file: piece.file, offset: piece.offset, byteCount: piece.byteCount)
        .stream(scratch: scratch, body)
    }
  }
}
