import CheckpointConversion
import CheckpointFormats
import Foundation
import TOMLKit

#if canImport(Glibc)
  import Glibc
#endif

extension ConfigLoader {
  /// The drop-in files that apply, by systemd's rules: only `*.toml`; a name in an earlier folder hides the same
  /// name in later ones; an empty file or a symlink to /dev/null masks the name; survivors in file-name order.
  public struct DropinSelection: Sendable, Equatable {
    /// Files to apply, in order.
    public var files: [String]
    /// Hidden or masked files.
    public var masked: [MaskedDropin]
    /// Folders that exist but cannot be listed.
    public var problems: [DropinProblem]
  }

  /// Picks the drop-ins of `dirs` (highest precedence first). Missing folders are fine (nothing in them).
  public static func selectDropins(dirs: [String]) -> DropinSelection {
    var winner: [String: String] = [:]
    var selection = DropinSelection(files: [], masked: [], problems: [])
    var maskingFiles: Set<String> = []
    for dir in dirs {
      let names: [String]
      do {
        names = try FileManager.default.contentsOfDirectory(atPath: dir)
      } catch {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) {
          selection.problems.append(DropinProblem(file: dir, message: "cannot list the drop-in folder"))
        }
        continue
      }
      for name in names.sorted() where name.hasSuffix(".toml") && !name.hasPrefix(".") {
        let file = dir.hasSuffix("/") ? dir + name : dir + "/" + name
        if let earlier = winner[name] {
          selection.masked.append(MaskedDropin(file: file, maskedBy: earlier))
          continue
        }
        if isDirectory(file) { continue }
        winner[name] = file
        if isMask(file) {
          maskingFiles.insert(file)
          selection.masked.append(MaskedDropin(file: file, maskedBy: file))
        }
      }
    }
    selection.files = winner.sorted { $0.key < $1.key }.map(\.value).filter { !maskingFiles.contains($0) }
    return selection
  }

  /// Reads every selected drop-in into `config.watches`; problems go to `config.problems`.
  static func loadDropins(into config: inout DaemonConfig) {
    let selection = selectDropins(dirs: config.dropinDirs)
    config.masked = selection.masked
    config.problems = selection.problems
    config.watches = []
    var owner: [String: String] = [:]
    for file in selection.files {
      do {
        let watch = try parseDropin(text: readText(path: file), file: file)
        if let first = owner[watch.path] {
          config.problems.append(
            DropinProblem(file: file, message: "path \(watch.path) is already watched by \(first); skipped"))
          continue
        }
        owner[watch.path] = file
        config.watches.append(watch)
      } catch let error as CheckpointError {
        config.problems.append(DropinProblem(file: file, message: error.message))
      } catch {
        config.problems.append(DropinProblem(file: file, message: "\(error)"))
      }
    }
  }

  /// Parses one drop-in; throws `CheckpointError` naming `file` and the key at fault.
  public static func parseDropin(text: String, file: String) throws -> WatchConfig {
    let table: TOMLTable
    do {
      table = try TOMLTable(string: text)
    } catch let error as TOMLParseError {
      throw CheckpointError(
        .invalidFormat, path: file,
        "not valid TOML at line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
    } catch {
      throw CheckpointError(.invalidFormat, path: file, "not valid TOML: \(error)")
    }
    do {
      return try parseDropin(keys: TOMLKeys(table: table), file: file)
    } catch let error as ConfigKeyError {
      throw CheckpointError(.invalidFormat, path: file, error.message)
    }
  }

  static let dropinKeys: Set<String> = [
    "path", "format", "dtype", "pattern", "ready_marker", "settle_seconds", "keep_source", "verify", "manifest",
    "exec_after", "exec_timeout_seconds",
    "max_shard_size", "consolidate",
    "watch", "poll_seconds",
  ]

  private static func parseDropin(keys: TOMLKeys, file: String) throws -> WatchConfig {
    try keys.rejectUnknown(allowed: dropinKeys)
    guard let rawPath = try keys.string("path") else { throw ConfigKeyError("path is required") }
    guard rawPath.hasPrefix("/") else { throw ConfigKeyError("path must be absolute, not \"\(rawPath)\"") }
    let path = (rawPath as NSString).standardizingPath
    guard let formatName = try keys.string("format") else {
      throw ConfigKeyError("format is required (\"bin\" or \"safetensors\")")
    }
    guard let format = WeightFormat(rawValue: formatName) else {
      throw ConfigKeyError("format must be \"bin\" or \"safetensors\", not \"\(formatName)\"")
    }
    var watch = WatchConfig(path: path, format: format, sourceFile: file)
    if let name = try keys.string("dtype") {
      guard let dtype = CastTarget(rawValue: name) else {
        throw ConfigKeyError("dtype must be one of keep, f32, f16, bf16, not \"\(name)\"")
      }
      watch.dtype = dtype
    }
    if let pattern = try keys.string("pattern") {
      guard !pattern.isEmpty, !pattern.contains("/") else {
        throw ConfigKeyError("pattern must be a folder-name glob without \"/\", not \"\(pattern)\"")
      }
      watch.pattern = pattern
    }
    if let marker = try keys.string("ready_marker") {
      guard !marker.contains("/"), marker != ".", marker != ".." else {
        throw ConfigKeyError("ready_marker must be a file name inside the checkpoint folder, not \"\(marker)\"")
      }
      watch.readyMarker = marker
    }
    if let settle = try keys.number("settle_seconds") {
      guard settle.isFinite, settle >= 0, settle <= 86_400 else {
        throw ConfigKeyError("settle_seconds must be between 0 and 86400, not \(settle)")
      }
      watch.settleSeconds = settle
    }
    if let keep = try keys.bool("keep_source") { watch.keepSource = keep }
    if let verify = try keys.bool("verify") { watch.verify = verify }
    if !watch.keepSource && !watch.verify {
      throw ConfigKeyError("keep_source = false needs verify = true (sources are removed only after verification)")
    }
    if let manifest = try keys.string("manifest") {
      let parts = manifest.split(separator: "/")
      guard !manifest.isEmpty, !manifest.hasSuffix("/"), !parts.contains("..") else {
        throw ConfigKeyError("manifest must be a file name (relative to path, or absolute), not \"\(manifest)\"")
      }
      watch.manifest = manifest
    }
    if let argv = try keys.stringArray("exec_after") {
      try checkExecutable(argv)
      watch.execAfter = argv
    }
    if let timeout = try keys.number("exec_timeout_seconds") {
      guard timeout.isFinite, timeout > 0, timeout <= 7 * 86_400 else {
        throw ConfigKeyError("exec_timeout_seconds must be more than 0 and at most 604800, not \(timeout)")
      }
      watch.execTimeoutSeconds = timeout
    }
    if let value = keys.table["max_shard_size"] {
      let text: String
      if let number = value.int {
        text = String(number)
      } else if let string = value.string {
        text = string
      } else {
        throw ConfigKeyError("max_shard_size must be a size such as \"5GB\" or \"4GiB\", not a TOML \(value.type)")
      }
      do {
        watch.maxShardBytes = try ShardSize.parse(text)
      } catch {
        throw ConfigKeyError("max_shard_size: \(error.message)")
      }
      watch.maxShardSize = text
    }
    if let mode = try keys.string("watch") {
      guard let setting = WatchSetting(rawValue: mode) else {
        throw ConfigKeyError("watch must be \"auto\", \"inotify\" or \"poll\", not \"\(mode)\"")
      }
      watch.watch = setting
    }
    if let seconds = try keys.number("poll_seconds") {
      guard seconds.isFinite, seconds >= 0.05, seconds <= 86_400 else {
        throw ConfigKeyError("poll_seconds must be between 0.05 and 86400, not \(seconds)")
      }
      watch.pollSeconds = seconds
    }
    if let mode = try keys.string("consolidate") {
      guard let parsed = ConsolidateMode(rawValue: mode) else {
        throw ConfigKeyError("consolidate must be \"auto\", \"always\" or \"never\", not \"\(mode)\"")
      }
      watch.consolidate = parsed
    }
    return watch
  }

  /// `exec_after` names an absolute, existing, executable regular file (it is run as an argv, never by a shell).
  static func checkExecutable(_ argv: [String]) throws {
    guard let program = argv.first else { return }
    guard program.hasPrefix("/") else {
      throw ConfigKeyError("exec_after[0] must be an absolute path (it is not looked up in PATH), not \"\(program)\"")
    }
    var info = stat()
    guard stat(program, &info) == 0 else {
      throw ConfigKeyError("exec_after[0] \(program) does not exist")
    }
    guard (info.st_mode & S_IFMT) == S_IFREG, access(program, X_OK) == 0 else {
      throw ConfigKeyError("exec_after[0] \(program) is not an executable file")
    }
  }

  static func isDirectory(_ file: String) -> Bool {
    var info = stat()
    return stat(file, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
  }

  /// An empty file or a symlink to /dev/null (systemd's mask).
  static func isMask(_ file: String) -> Bool {
    if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: file), target == "/dev/null" {
      return true
    }
    var info = stat()
    guard stat(file, &info) == 0 else { return false }
    if (info.st_mode & S_IFMT) == S_IFCHR {
      // A symlink chain that ends at /dev/null.
      var null = stat()
      return stat("/dev/null", &null) == 0 && info.st_rdev == null.st_rdev
    }
    return (info.st_mode & S_IFMT) == S_IFREG && info.st_size == 0
  }
}
