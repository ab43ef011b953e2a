import ArgumentParser
import CheckpointConversion
import CheckpointDaemon
import CheckpointFormats
import Foundation

/// `ckptd convert`: one-shot conversion of checkpoint folders or single weight files.
struct ConvertCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "convert",
    abstract: "Convert checkpoint folders or single weight files between safetensors and PyTorch .bin.",
    discussion: """
      A folder is treated as a Trainer checkpoint: its model weights (model*.safetensors, \
      pytorch_model*.bin, adapter_model.*, other state dicts such as colbert_linear.pt) are converted \
      with their index files, under the names transformers uses (pytorch_model.bin <-> model.safetensors). \
      Optimizer, scheduler, RNG state and training_args.bin are left alone.

      Each output is written to a temporary file, compared tensor by tensor with the source, and only \
      then renamed into place; the folder's modification time is kept, so the Trainer's checkpoint \
      rotation is not confused. A file ckptd did not write is never overwritten unless you pass --force.
      """
  )

  /// The output format as typed on the command line.
  enum Format: String, ExpressibleByArgument, CaseIterable {
    case bin
    case safetensors

    var weightFormat: WeightFormat { self == .bin ? .torch : .safetensors }
  }

  /// The dtype choice as typed on the command line.
  enum DTypeChoice: String, ExpressibleByArgument, CaseIterable {
    case keep, f32, f16, bf16

    var castTarget: CastTarget { CastTarget(rawValue: rawValue) ?? .keep }
  }

  @Argument(help: "Checkpoint folders (such as runs/x/checkpoint-500) or single weight files.")
  var paths: [String]

  @Option(
    name: .customLong("to"), help: ArgumentHelp("The format to write: bin or safetensors.", valueName: "format"))
  var format: Format

  @Option(
    help: ArgumentHelp(
      "Cast floating tensors (f16, bf16, f32, f64) to f32, f16 or bf16; keep leaves every dtype as is.",
      valueName: "keep|f32|f16|bf16"))
  var dtype: DTypeChoice = .keep

  @Option(
    name: .customLong("out"),
    help: ArgumentHelp("Write the outputs into this folder instead of beside the sources.", valueName: "dir"))
  var out: String?

  @Flag(name: .customLong("no-verify"), help: "Skip re-reading the outputs and comparing them with the sources.")
  var noVerify = false

  @Flag(help: "Remove the source weights and their index once the outputs are verified.")
  var removeSource = false

  @Flag(help: "Overwrite existing files under the output names even if ckptd did not write them.")
  var force = false

  @Flag(help: "Print a JSON summary of what was written instead of the progress and text summary.")
  var json = false

  @Flag(help: "Run at idle I/O priority, nice 10 and SCHED_BATCH, out of a training job's way (as the daemon's unit).")
  var nice = false

  func validate() throws {
    if removeSource && noVerify {
      throw ValidationError("--remove-source needs verification: drop --no-verify")
    }
    if out != nil && paths.count > 1 {
      throw ValidationError("--out takes one PATH: the outputs of several checkpoints would collide")
    }
  }

  /// Set by SIGINT/SIGTERM: the conversion stops at the next chunk and removes its temporaries.
  nonisolated(unsafe) static var interrupted = false

  func run() async throws {
    // A closed stdout/stderr pipe must not kill a conversion half way; Ctrl-C cancels it cleanly.
    signal(SIGPIPE, SIG_IGN)
    signal(SIGINT) { _ in ConvertCommand.interrupted = true }
    signal(SIGTERM) { _ in ConvertCommand.interrupted = true }
    if nice { try ProcessPriority.lowerProcess() }
    if let out {
      do {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
      } catch {
        throw CheckpointError(.io, path: out, "cannot create the output folder")
      }
    }
    let bar = ProgressBar()
    var results: [ConversionResult] = []
    for path in paths {
      var options = ConversionOptions(
        target: format.weightFormat, dtype: dtype.castTarget, outDir: out, verify: !noVerify,
        removeSource: removeSource, force: force, isCancelled: { ConvertCommand.interrupted })
      // Output hashes are only reported in the JSON summary; without them the bytes need not pass by.
      options.hashOutputs = json
      if !json {
        options.progress = { @Sendable done, total in bar.update(done: done, total: total) }
      }
      bar.begin(path)
      defer { bar.finish() }
      let result = try Converter.convert(path: path, options: options)
      bar.finish()
      if !json { print(Self.summary(result)) }
      results.append(result)
    }
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
      let data = try encoder.encode(results)
      print(String(decoding: data, as: UTF8.self))
    }
  }

  /// The text summary of one conversion.
  static func summary(_ result: ConversionResult) -> String {
    var lines: [String] = []
    let target = result.target == .torch ? ".bin" : "safetensors"
    switch result.outcome {
    case .alreadyInTargetFormat:
      lines.append("\(result.path): already \(target); nothing to do")
    case .noWeights:
      lines.append("\(result.path): no weight files to convert")
    case .converted:
      let bytes = result.outputs.reduce(Int64(0)) { $0 + $1.bytes }
      let verified = result.verified ? ", verified" : ", not verified"
      let seconds = (result.seconds * 10).rounded() / 10
      lines.append(
        "\(result.path): wrote \(result.outputs.count) file(s), \(StatusRenderer.bytes(bytes)), "
          + "\(result.tensorCount) tensors\(verified), \(seconds) s")
      for output in result.outputs {
        lines.append("  \(output.path) (\(StatusRenderer.bytes(output.bytes)))")
      }
      for removed in result.removedSources {
        lines.append("  removed \(removed)")
      }
    }
    for skipped in result.skipped {
      lines.append("  skipped \(skipped.path): \(skipped.reason)")
    }
    return lines.joined(separator: "\n")
  }
}
