/// Reads and validates a safetensors file; tensors are handed out as byte ranges, not loaded.
public enum SafetensorsReader {
  public static func read(path: String) throws -> StateDict {
    throw CheckpointError(.unsupported, path: path, "safetensors reader not implemented yet")
  }
}
