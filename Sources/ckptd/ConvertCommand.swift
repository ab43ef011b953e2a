import ArgumentParser
import CheckpointConversion
import CheckpointDaemon
import CheckpointFormats
import Foundation
import Synchronization

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

  @Option(
    help: ArgumentHelp(
      "DeepSpeed ZeRO or Distributed Checkpoint (FSDP) folders: consolidate them into one weight file when "
        + "they hold no model weights of their own (auto), always, or never.",
      valueName: "auto|always|never"))
  var consolidate: ConsolidateMode = .auto

  @Option(
    name: .customLong("max-shard-size"),
    help: ArgumentHelp(
      "Split the outputs into shards of at most this size, as transformers' save_pretrained does (\"5GB\" = 5*10^9 "
        + "bytes, \"4GiB\" = 4*2^30, a plain number is bytes); \"\" keeps the source's sharding.",
      valueName: "size"))
  var maxShardSize: String = ""

  @Flag(help: "When another ckptd holds the checkpoint's claim, wait for it instead of failing.")
  var wait = false

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
  static let interrupted = Atomic<Bool>(false)

  func run() async throws {
    let shardLimit: Int64?
    do {
      shardLimit = try ShardSize.parse(maxShardSize)
    } catch {
      FileHandleOutput.standardError("ckptd: --max-shard-size: \(error.message)")
      throw ExitCode(2)
    }
    // A closed stdout/stderr pipe must not kill a conversion half way; Ctrl-C cancels it cleanly.
    signal(SIGPIPE, SIG_IGN)
    signal(SIGINT) { _ in ConvertCommand.interrupted.store(true, ordering: .relaxed) }
    signal(SIGTERM) { _ in ConvertCommand.interrupted.store(true, ordering: .relaxed) }
    if nice {
      try ProcessPriority.lowerProcess()
      // libdispatch gives worker threads it starts later a nice value of their own (for their QoS): lower
      // those too, for as long as the conversions run.
      ProcessPriority.keepLowered()
    }
    if let out {
      do {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
      } catch {
        throw CheckpointError(.io, path: out, "cannot create the output folder")
      }
    }
    let bar: (any ProgressReporting)? = json ? nil : ProgressBar()
    var options = ConversionOptions(
      target: format.weightFormat, dtype: dtype.castTarget, outDir: out, verify: !noVerify,
      removeSource: removeSource, force: force,
      isCancelled: { ConvertCommand.interrupted.load(ordering: .relaxed) }, maxShardSize: shardLimit)
    // Output hashes are only reported in the JSON summary; without them the bytes need not pass by.
    options.hashOutputs = json
    if let bar {
      options.progress = { @Sendable done, total in bar.update(done: done, total: total) }
    }
    // A folder is converted under its claim (DESIGN.md "Shared file systems and several nodes").
    let cluster = try ClaimedConversion.clusterSettings()
    var claims = ClaimBook(identity: cluster.identity, ttl: cluster.ttl, clock: ContinuousClock())
    let (mode, wait, sweep) = (consolidate, wait, out == nil)
    let interrupted: @Sendable () -> Bool = { ConvertCommand.interrupted.load(ordering: .relaxed) }
    let batch = await Self.convertEach(
      paths, bar: bar, isInterrupted: interrupted,
      convert: { path in
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else {
          return try Consolidator.convert(path: path, mode: mode, options: options)
        }
        let outcome = try await ClaimedConversion.run(
          folder: path, book: &claims, clock: ContinuousClock(), wait: wait, sweep: sweep,
          interrupted: interrupted, isDone: { ClaimedConversion.outputsExist(path: path, options: options) }
        ) { [options] isCancelled, stillOwned in
          var claimed = options
          claimed.isCancelled = { isCancelled() }
          claimed.stillOwned = { stillOwned() }
          return try Consolidator.convert(path: path, mode: mode, options: claimed)
        }
        guard case .ran(let result, _) = outcome else {
          if case .finishedByOther(let holder) = outcome {
            print("\(path): converted while waiting for the claim of \(holder); nothing to do")
          }
          return nil
        }
        return result
      },
      onResult: { if !json { print(Self.summary($0)) } },
      onFailure: { FileHandleOutput.standardError("ckptd: \($0)") })
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
      let data = try encoder.encode(batch.results)
      print(String(decoding: data, as: UTF8.self))
    }
    if !batch.failures.isEmpty { throw ExitCode.failure }
  }

  /// What a run over several paths did.
  struct Batch {
    var results: [ConversionResult] = []
    /// One line per path that failed, naming the file.
    var failures: [String] = []
  }

  /// Converts every path it can, in order: a failing path is reported (one line, naming the file) and the
  /// next one is tried; an interrupt stops before the next path. The progress reporter gets exactly one
  /// `begin` and one `finish` per path tried.
  static func convertEach(
    _ paths: [String], bar: (any ProgressReporting)?, isInterrupted: () -> Bool,
    convert: (String) async throws -> ConversionResult?, onResult: (ConversionResult) -> Void,
    onFailure: (String) -> Void
  ) async -> Batch {
    var batch = Batch()
    for path in paths {
      if isInterrupted() {
        let line = "\(path): not converted: interrupted"
        onFailure(line)
        batch.failures.append(line)
        return batch
      }
      bar?.begin(path)
      let outcome: Result<ConversionResult?, any Error>
      do {
        outcome = .success(try await convert(path))
      } catch {
        outcome = .failure(error)
      }
      bar?.finish()
      switch outcome {
      case .success(nil):
        break
      case .success(let result?):
        onResult(result)
        batch.results.append(result)
      case .failure(let error):
        let line = failureLine(error, path: path)
        onFailure(line)
        batch.failures.append(line)
      }
    }
    return batch
  }

  /// One line naming the file: the error's own path, or the path given when the error has none.
  static func failureLine(_ error: any Error, path: String) -> String {
    if let error = error as? CheckpointError {
      return error.path.isEmpty ? "\(path): \(error.message)" : error.description
    }
    return "\(path): \(error)"
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

extension ConsolidateMode: ExpressibleByArgument {}
