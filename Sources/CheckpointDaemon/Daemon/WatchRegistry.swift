/// Who asked for a watch on a directory: several parts of the daemon may watch the same path (a missing
/// root's parent can be another root), and the kernel gives one descriptor per inode.
enum WatchOwner: Hashable, Sendable {
  /// An output root.
  case root(String)
  /// The nearest existing parent of a root that does not exist (yet).
  case parent(root: String)
  /// A pending checkpoint folder of a root.
  case folder(root: String, folder: String)
  /// A drop-in directory.
  case dropins
  /// The nearest existing parent of a drop-in directory that does not exist (yet).
  case dropinParent(String)
}

/// The daemon's own map from watch descriptors to owners; masks are merged per path.
struct WatchRegistry {
  private(set) var owners: [Int32: Set<WatchOwner>] = [:]
  private var wdByPath: [String: Int32] = [:]
  private var maskByWd: [Int32: UInt32] = [:]
  private var pathByWd: [Int32: String] = [:]

  /// Descriptors this registry removed itself: events still queued for them are expected, not lost state.
  private(set) var retired: Set<Int32> = []

  /// The owners of `wd`; empty when unknown.
  func owners(of wd: Int32) -> Set<WatchOwner> { owners[wd] ?? [] }

  /// The descriptor watching `path`, if any.
  func descriptor(for path: String) -> Int32? { wdByPath[path] }

  /// Number of live descriptors.
  var count: Int { owners.count }

  /// Watches `path` for `owner` (adding `mask` to what the path already has). The kernel is always asked:
  /// re-adding a live watch is idempotent, and a path deleted and re-created gets its new descriptor.
  mutating func acquire(_ path: String, mask: UInt32, owner: WatchOwner, watcher: InotifyWatcher) throws {
    let old = wdByPath[path]
    let combined = mask | (old.flatMap { maskByWd[$0] } ?? 0)
    let wd = try watcher.watch(path, mask: combined)
    if let old, old != wd { rebind(from: old, to: wd, path: path) }
    if let previousPath = pathByWd[wd], previousPath != path { wdByPath[previousPath] = nil }
    wdByPath[path] = wd
    pathByWd[wd] = path
    maskByWd[wd] = combined
    retired.remove(wd)
    owners[wd, default: []].insert(owner)
  }

  /// Drops `owner` everywhere; a descriptor nobody owns any more is removed from the kernel.
  mutating func release(_ owner: WatchOwner, watcher: InotifyWatcher) {
    for (wd, set) in owners where set.contains(owner) {
      var remaining = set
      remaining.remove(owner)
      if remaining.isEmpty {
        forget(wd)
        retired.insert(wd)
        watcher.unwatch(wd)
      } else {
        owners[wd] = remaining
      }
    }
  }

  /// Drops every owner that matches `predicate`.
  mutating func release(where predicate: (WatchOwner) -> Bool, watcher: InotifyWatcher) {
    let matching = Set(owners.values.flatMap { $0 }.filter(predicate))
    for owner in matching { release(owner, watcher: watcher) }
  }

  /// The kernel dropped `wd` (IN_IGNORED): forget it without calling into inotify.
  mutating func forget(_ wd: Int32) {
    owners[wd] = nil
    retired.remove(wd)
    maskByWd[wd] = nil
    if let path = pathByWd.removeValue(forKey: wd), wdByPath[path] == wd { wdByPath[path] = nil }
  }

  private mutating func rebind(from old: Int32, to new: Int32, path: String) {
    guard old != new else { return }
    let set = owners.removeValue(forKey: old) ?? []
    owners[new, default: []].formUnion(set)
    pathByWd[old] = nil
    pathByWd[new] = path
    wdByPath[path] = new
    maskByWd[old] = nil
  }
}
