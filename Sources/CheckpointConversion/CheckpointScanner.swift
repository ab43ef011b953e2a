import CLinux
import CheckpointFormats
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The weight files of one model in a checkpoint: one file, or the shards of an index.
public struct WeightSet: Sendable, Equatable {
  /// The format the file names say.
  public var format: WeightFormat
  /// The index file name (`model.safetensors.index.json`) for a sharded set.
  public var indexName: String?
  /// The weight file names, in the folder, sorted.
  public var files: [String]

  public init(format: WeightFormat, indexName: String? = nil, files: [String]) {
    self.format = format
    self.indexName = indexName
    self.files = files
  }
}

/// A file that looked like weights but is left alone, with the reason.
public struct SkippedFile: Sendable, Codable, Equatable {
  public var path: String
  public var reason: String

  public init(path: String, reason: String) {
    self.path = path
    self.reason = reason
  }
}

/// What a checkpoint folder holds, as far as conversion cares.
public struct CheckpointScan: Sendable {
  /// The folder scanned (for a single file: the file's folder).
  public var folder: String
  /// Every weight set found, sharded sets first by index name, then single files by name.
  public var sets: [WeightSet]
  /// Files left alone on purpose.
  public var skipped: [SkippedFile]

  /// The sets already in `format`.
  public func sets(in format: WeightFormat) -> [WeightSet] { sets.filter { $0.format == format } }
}

/// Finds the weight files of a Trainer checkpoint folder and their index files.
///
/// Weights are `model*.safetensors`, `pytorch_model*.bin`, `adapter_model.*` and any other
/// `*.safetensors`, `*.bin`, `*.pt` file except the Trainer's non-weight files (optimizer, scheduler,
/// scaler, RNG state, training arguments). Hidden files (ckptd's own temporaries) and subfolders are
/// ignored. A symlinked weight file must stay inside the folder.
public enum CheckpointScanner {
  /// Scans a checkpoint folder.
  public static func scan(folder: String) throws -> CheckpointScan {
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
    } catch {
      var info = stat()
      if lstat(folder, &info) != 0 {
        throw CheckpointError(.vanished, path: folder, "the folder does not exist (any more)")
      }
      throw CheckpointError(.io, path: folder, "cannot list the folder")
    }
    let realFolder = try resolved(folder)
    var weightNames: [String] = []
    var indexNames: [String] = []
    for name in names where !name.hasPrefix(".") {
      let path = join(folder, name)
      guard try isRegularFile(path, inside: realFolder) else { continue }
      if WeightNaming.isIndexName(name) {
        indexNames.append(name)
      } else if WeightNaming.format(ofName: name) != nil, !WeightNaming.isNonWeightName(name) {
        weightNames.append(name)
      }
    }
    var sets: [WeightSet] = []
    var claimed = Set<String>()
    for indexName in indexNames {
      guard let format = WeightNaming.format(ofIndex: indexName) else { continue }
      let index = try ShardIndex.read(path: join(folder, indexName))
      let shards = index.shardNames
      for shard in shards {
        guard weightNames.contains(shard) else {
          throw CheckpointError(
            .invalidFormat, path: join(folder, indexName), "lists shard '\(shard)', which is not in the folder")
        }
        guard WeightNaming.format(ofName: shard) == format else {
          throw CheckpointError(
            .invalidFormat, path: join(folder, indexName), "lists shard '\(shard)' of a different format")
        }
        guard !claimed.contains(shard) else {
          throw CheckpointError(.invalidFormat, path: join(folder, indexName), "shard '\(shard)' is in two indexes")
        }
        claimed.insert(shard)
      }
      sets.append(WeightSet(format: format, indexName: indexName, files: shards))
    }
    for name in weightNames where !claimed.contains(name) {
      guard let format = WeightNaming.format(ofName: name) else { continue }
      sets.append(WeightSet(format: format, files: [name]))
    }
    return CheckpointScan(folder: folder, sets: sets, skipped: [])
  }

  /// A single weight file given by the user: a set of one, whatever its name (the format comes from the
  /// extension, or from the content for other names).
  public static func scan(file path: String) throws -> CheckpointScan {
    let (folder, name) = OutputFile.split(path)
    let format = try WeightNaming.format(ofName: name) ?? WeightFile.detect(path: path)
    return CheckpointScan(
      folder: folder.isEmpty ? "." : folder, sets: [WeightSet(format: format, files: [name])], skipped: [])
  }

  /// `folder/name`.
  static func join(_ folder: String, _ name: String) -> String {
    folder.hasSuffix("/") ? folder + name : folder + "/" + name
  }

  /// The canonical absolute path (symlinks resolved).
  static func resolved(_ path: String) throws -> String {
    guard let real = realpath(path, nil) else {
      let err = errno
      throw CheckpointError(.io, path: path, "cannot resolve: \(String(cString: strerror(err)))", errno: err)
    }
    defer { free(real) }
    return String(cString: real)
  }

  /// True for a regular file (directly, or through a symlink that stays inside `realFolder`).
  static func isRegularFile(_ path: String, inside realFolder: String) throws -> Bool {
    var info = stat()
    guard lstat(path, &info) == 0 else { return false }
    if (info.st_mode & S_IFMT) == S_IFLNK {
      guard WeightNaming.format(ofName: OutputFile.split(path).1) != nil || WeightNaming.isIndexName(path) else {
        return false
      }
      let target = try resolved(path)
      let prefix = realFolder.hasSuffix("/") ? realFolder : realFolder + "/"
      guard target.hasPrefix(prefix) else {
        throw CheckpointError(
          .forbidden, path: path, "is a symlink that leads outside the checkpoint folder (to \(target)); refused")
      }
      guard stat(path, &info) == 0 else { return false }
    }
    return (info.st_mode & S_IFMT) == S_IFREG
  }
}
