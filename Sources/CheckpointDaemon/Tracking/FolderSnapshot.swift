#if canImport(Glibc)
  import Glibc
#endif

/// Size and modification time of every regular file in a checkpoint folder (not recursive).
public struct FolderSnapshot: Sendable, Equatable {
  /// One file's figures.
  public struct Entry: Sendable, Equatable {
    public var size: Int64
    /// Modification time in seconds since the epoch.
    public var mtime: Double
  }

  /// File name to figures. Dot names are left out: ckptd's own temporaries and claims, NFS's `.nfs*` silly-renames,
  /// FUSE's `.fuse_hidden*` (DESIGN.md: scans skip dot files), except `keep` (a ready marker may be a dot name).
  public var files: [String: Entry]

  /// Creates a snapshot from known entries.
  public init(files: [String: Entry]) { self.files = files }

  /// Reads the folder; nil when it does not exist (any more). `keep`: a dot name that still counts.
  public static func take(_ folder: String, keep: String = "") -> FolderSnapshot? {
    guard let dir = opendir(folder) else { return nil }
    defer { closedir(dir) }
    var files: [String: Entry] = [:]
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name.hasPrefix(".") && (name != keep || name == "." || name == "..") { continue }
      var info = stat()
      guard lstat(folder + "/" + name, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
      let mtime = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
      files[name] = Entry(size: Int64(info.st_size), mtime: mtime)
    }
    return FolderSnapshot(files: files)
  }

  /// The newest modification time, or nil for an empty folder.
  public var newest: Double? { files.values.map(\.mtime).max() }

  /// The weight files and indexes, sorted.
  public var weightFiles: [String] {
    files.keys.filter { CompletionRules.isWeightFile($0) || CompletionRules.isIndexFile($0) }.sorted()
  }

  /// A stable text of the weight files' names, sizes and mtimes: a failed conversion is retried only once
  /// this changes.
  public var weightFingerprint: String {
    weightFiles.compactMap { name in
      files[name].map { "\(name):\($0.size):\($0.mtime)" }
    }.joined(separator: ";")
  }
}
