import ArgumentParser
import CheckpointConversion

/// `ckptd verify A B`: exit 0 only if both hold the same tensors bit for bit.
struct VerifyCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "verify",
    abstract: "Check that two weight files or checkpoint folders hold the same tensors, bit for bit.",
    discussion: """
      Compares every tensor name, dtype, shape and byte. A and B may be files in either format \
      (safetensors or PyTorch .bin) or checkpoint folders, whose weight files are compared as one set; \
      tied weights recorded as safetensors metadata aliases count as tensors. Exits 0 when everything \
      matches, 1 with the first difference otherwise. A DeepSpeed ZeRO or Distributed Checkpoint folder \
      without weights of its own stands for its consolidated model.
      """
  )

  @Argument(help: "The first weight file or checkpoint folder.")
  var first: String

  @Argument(help: "The second weight file or checkpoint folder.")
  var second: String

  func run() async throws {
    let count = try DistributedComparison.compare(first, second)
    print("same: \(count) tensors match bit for bit")
  }
}
