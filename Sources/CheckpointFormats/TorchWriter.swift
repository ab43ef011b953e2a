/// Writes a `torch.save`-layout zip that `torch.load(weights_only=True, mmap=True)` loads.
public enum TorchWriter {
  public static func write(
    storages: [OutputStorage], tensors: [TensorInfo], archiveName: String, to output: OutputFile,
    scratch: UnsafeMutableRawBufferPointer
  ) throws {
    throw CheckpointError(.unsupported, path: output.path, "torch writer not implemented yet")
  }
}
