/// Reads `torch.save` files (zip and legacy) through a restricted pickle machine; nothing is executed.
public enum TorchReader {
  public static func read(path: String) throws -> StateDict {
    throw CheckpointError(.unsupported, path: path, "torch reader not implemented yet")
  }
}
