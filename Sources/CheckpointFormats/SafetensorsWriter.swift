/// Streams tensors into a safetensors file laid out as the reference writer lays it out.
public enum SafetensorsWriter {
  public static func write(
    tensors: [OutputTensor], metadata: [String: String], to output: OutputFile,
    scratch: UnsafeMutableRawBufferPointer
  ) throws {
    throw CheckpointError(.unsupported, path: output.path, "safetensors writer not implemented yet")
  }
}
