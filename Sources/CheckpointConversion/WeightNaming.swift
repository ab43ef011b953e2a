import CheckpointFormats

/// The transformers naming rules between the two formats (DESIGN.md, "What a conversion does").
///
/// `pytorch_model.bin` <-> `model.safetensors`, `pytorch_model-00001-of-00003.bin` <->
/// `model-00001-of-00003.safetensors`, `adapter_model.bin` <-> `adapter_model.safetensors`, other
/// `X.bin` / `X.pt` -> `X.safetensors` and `X.safetensors` -> `X.bin`; index files follow their weights.
public enum WeightNaming {
  /// Suffix of a sharded checkpoint's index file.
  public static let indexSuffix = ".index.json"

  /// The format a weight file name says it holds, or nil for a name that is not a weight file.
  public static func format(ofName name: String) -> WeightFormat? {
    if name.hasSuffix(".safetensors") { return .safetensors }
    if name.hasSuffix(".bin") || name.hasSuffix(".pt") { return .torch }
    return nil
  }

  /// The file name a weight file is written under in `target` format, or nil if it already is in it.
  public static func outputName(for name: String, to target: WeightFormat) -> String? {
    guard let format = format(ofName: name), format != target else { return nil }
    switch target {
    case .safetensors:
      let stem = name.hasSuffix(".pt") ? String(name.dropLast(3)) : String(name.dropLast(4))
      if stem == "pytorch_model" || stem.hasPrefix("pytorch_model-") {
        return String(stem.dropFirst("pytorch_".count)) + ".safetensors"
      }
      return stem + ".safetensors"
    case .torch:
      let stem = String(name.dropLast(".safetensors".count))
      if stem == "model" || stem.hasPrefix("model-") {
        return "pytorch_" + stem + ".bin"
      }
      return stem + ".bin"
    }
  }

  /// True if `name` is an index file (`model.safetensors.index.json`, `pytorch_model.bin.index.json`).
  public static func isIndexName(_ name: String) -> Bool {
    guard name.hasSuffix(indexSuffix) else { return false }
    return format(ofName: String(name.dropLast(indexSuffix.count))) != nil
  }

  /// The format of the weights an index file describes.
  public static func format(ofIndex name: String) -> WeightFormat? {
    guard name.hasSuffix(indexSuffix) else { return nil }
    return format(ofName: String(name.dropLast(indexSuffix.count)))
  }

  /// The index name for the converted weights: `pytorch_model.bin.index.json` ->
  /// `model.safetensors.index.json`; nil if the index already describes `target` weights.
  public static func outputIndexName(for name: String, to target: WeightFormat) -> String? {
    guard name.hasSuffix(indexSuffix) else { return nil }
    guard let weights = outputName(for: String(name.dropLast(indexSuffix.count)), to: target) else { return nil }
    return weights + indexSuffix
  }

  /// The torch archive's top folder for an output file: the base name without its last extension.
  public static func archiveName(for name: String) -> String {
    guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return name }
    return String(name[..<dot])
  }

  /// Files a Trainer writes that are never weights, even though they may end in `.bin` or `.pt`.
  public static func isNonWeightName(_ name: String) -> Bool {
    let stems: Set<String> = ["optimizer", "scheduler", "scaler", "training_args"]
    let stem = archiveName(for: name)
    if stems.contains(stem) { return true }
    for prefix in ["rng_state", "random_states", "optimizer", "scheduler"] where stem.hasPrefix(prefix) {
      return true
    }
    return false
  }
}
