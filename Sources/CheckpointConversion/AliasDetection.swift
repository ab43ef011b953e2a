import CheckpointFormats

/// Tied weights: which names are the same tensor under another name.
///
/// Going to safetensors, names that are exact aliases (same storage, offset, shape, strides and dtype)
/// are written once and the others recorded as `{dropped: kept}` in `__metadata__`, as the official
/// `convert.py` does; the kept name is the first in sorted order among the names whose view covers the
/// whole storage (any of the group if none does). Coming back, those entries become names sharing one
/// storage again.
public enum AliasDetection {
  /// The view identity that makes two names exact aliases.
  struct ViewKey: Hashable {
    var storageKey: String
    var storageOffset: Int
    var shape: [Int]
    var strides: [Int]
    var dtype: DType
  }

  /// `[dropped: kept]` for every group of exact aliases among `tensors`. Partly overlapping views are not
  /// aliases: each is written as its own tensor.
  public static func exactAliases(tensors: [TensorInfo], storages: [String: StorageInfo]) -> [String: String] {
    var groups: [ViewKey: [TensorInfo]] = [:]
    for tensor in tensors {
      let key = ViewKey(
        storageKey: tensor.storageKey, storageOffset: tensor.storageOffset, shape: tensor.shape,
        strides: tensor.strides, dtype: tensor.dtype)
      groups[key, default: []].append(tensor)
    }
    var dropped: [String: String] = [:]
    for group in groups.values where group.count > 1 {
      let names = group.map(\.name).sorted()
      let complete = group.filter { isComplete($0, storage: storages[$0.storageKey]) }.map(\.name).sorted()
      let kept = preferredKeptName(complete.isEmpty ? names : complete)
      for name in names where name != kept {
        dropped[name] = kept
      }
    }
    return dropped
  }

  /// The name to keep among aliases: like transformers' own save (which drops the names in a model's
  /// `_tied_weights_keys`), an input embedding is kept rather than the output head tied to it, so that
  /// `transformer.wte.weight` survives and `lm_head.weight` becomes the alias. Otherwise the first name in
  /// sorted order, as `convert.py` picks it.
  public static func preferredKeptName(_ candidates: [String]) -> String {
    let sorted = candidates.sorted()
    return sorted.first(where: { !isTiedOutputName($0) }) ?? sorted[0]
  }

  /// Names transformers models tie to their input embeddings and list in `_tied_weights_keys`.
  public static func isTiedOutputName(_ name: String) -> Bool {
    let last = name.split(separator: ".").suffix(2).joined(separator: ".")
    return last == "lm_head.weight" || last == "lm_head.bias" || name.hasSuffix("predictions.decoder.weight")
      || name.hasSuffix("predictions.decoder.bias") || last == "embed_out.weight" || name == "output.weight"
  }

  /// True if the view starts at the storage's first element, is contiguous and covers every byte of it
  /// (`convert.py` `_is_complete`).
  public static func isComplete(_ tensor: TensorInfo, storage: StorageInfo?) -> Bool {
    guard let storage else { return false }
    return tensor.storageOffset == 0 && tensor.isContiguous && tensor.byteCount == storage.byteCount
  }

  /// The alias entries of a safetensors `__metadata__`: `{dropped: kept}` where `kept` is a tensor in the
  /// file and `dropped` is not. Other keys (`format`, free text) are not aliases.
  public static func aliases(fromMetadata metadata: [String: String], tensorNames: Set<String>) -> [String: String] {
    var aliases: [String: String] = [:]
    for (key, value) in metadata where key != "format" && key != value {
      if tensorNames.contains(value) && !tensorNames.contains(key) {
        aliases[key] = value
      }
    }
    return aliases
  }
}

extension StateDict {
  /// Every name the file holds, with the view it reads from: the tensors themselves plus, for
  /// safetensors, the `{dropped: kept}` aliases of `__metadata__` (carrying the kept tensor's view).
  public func logicalTensors() -> [TensorInfo] {
    var result = tensors
    guard format == .safetensors else { return result }
    let byName = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    let aliases = AliasDetection.aliases(fromMetadata: metadata, tensorNames: Set(byName.keys))
    for (dropped, kept) in aliases.sorted(by: { $0.key < $1.key }) {
      guard var view = byName[kept] else { continue }
      view.name = dropped
      result.append(view)
    }
    return result
  }
}
