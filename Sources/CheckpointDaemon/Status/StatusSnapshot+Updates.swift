import CheckpointFormats

extension DirectoryStatus {
  /// A fresh entry for a watched directory (no counts, nothing pending).
  public init(watch: WatchConfig, state: DirectoryWatchState = .watching) {
    self.init(path: watch.path, format: watch.format.rawValue, dtype: watch.dtype.rawValue, state: state)
  }
}

extension StatusSnapshot {
  /// Counts one manifest event for the directory at `path` (no-op for an unknown directory).
  public mutating func count(_ event: ManifestEvent, in path: String) {
    guard let index = directoryIndex(path: path) else { return }
    directories[index].counts[event.rawValue, default: 0] += 1
  }

  /// Replaces the directory list with one entry per watch, keeping counts, pending and errors of the paths that
  /// stay (a reload).
  public mutating func setDirectories(_ watches: [WatchConfig]) {
    directories = watches.map { watch in
      var entry = DirectoryStatus(watch: watch)
      if let old = directoryIndex(path: watch.path).map({ directories[$0] }) {
        entry.state = old.state
        entry.counts = old.counts
        entry.pending = old.pending
        entry.lastError = old.lastError
      }
      return entry
    }
  }
}
