import CheckpointFormats
import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

extension Daemon {
  /// One message from the watcher.
  func handle(_ message: WatcherMessage) {
    switch message {
    case .rescan(let reason):
      rescanAll(reason: reason)
    case .event(let event):
      let owners = registry.owners(of: event.wd)
      let retired = registry.retired.contains(event.wd)
      if event.has(WatchMask.ignored) { registry.forget(event.wd) }
      if owners.isEmpty && retired { return }
      if owners.isEmpty {
        if !event.has(WatchMask.ignored) { rescanAll(reason: "event on unknown watch \(event.wd)") }
        return
      }
      for owner in owners { route(event, to: owner) }
    }
  }

  private func route(_ event: InotifyEvent, to owner: WatchOwner) {
    switch owner {
    case .root(let path):
      guard let root = roots[path] else { return }
      rootEvent(root, event)
    case .parent(let path):
      guard let root = roots[path], !root.present else { return }
      establishIfAppeared(
        root, force: event.has(WatchMask.ignored | WatchMask.deleteSelf | WatchMask.moveSelf))
    case .folder(let path, let folder):
      guard let root = roots[path] else { return }
      if event.name.isEmpty
        && event.has(WatchMask.deleteSelf | WatchMask.moveSelf | WatchMask.ignored)
      {
        folderGone(root, name: (folder as NSString).lastPathComponent)
      } else {
        noteChange(root, folder: folder)
      }
    case .dropins:
      if event.name.isEmpty && event.has(WatchMask.deleteSelf | WatchMask.moveSelf | WatchMask.ignored) {
        // The drop-in directory itself went away: watch its parent for it to come back.
        watchDropinDirectories()
      }
      scheduleReload()
    case .dropinParent(let dir):
      // Something changed in the nearest existing parent of a missing drop-in directory: only the directory
      // itself appearing, a nearer parent appearing or this parent going away matter (it may be a busy one).
      let appeared = Self.isDirectory(dir)
      let parentGone = event.name.isEmpty && event.has(WatchMask.deleteSelf | WatchMask.moveSelf | WatchMask.ignored)
      guard appeared || parentGone || nearestParent(of: dir) != event.directory else { return }
      watchDropinDirectories()
      if appeared {
        logger.info("drop-in directory appeared: \(dir)")
        scheduleReload()
      }
    }
  }

  /// Something changed in a tracked folder: it is evaluated once it has been quiet for the settle time (or the
  /// stability delay), so a burst of writes costs one scan, not one per event.
  func noteChange(_ root: WatchedRoot, folder: String) {
    root.tracker.noteChange(in: folder, now: clock.wallSeconds)
    let quiet = max(Duration.seconds(root.config.settleSeconds), options.stabilityDelay)
    folderDue[folder] = Due(root: root.path, at: clock.now() + quiet)
  }

  private func rootEvent(_ root: WatchedRoot, _ event: InotifyEvent) {
    if event.name.isEmpty {
      if event.has(WatchMask.deleteSelf | WatchMask.moveSelf | WatchMask.ignored) { rootLost(root) }
      return
    }
    guard root.tracker.rules.matches(event.name) else { return }
    if event.has(WatchMask.create | WatchMask.movedTo) && event.isDirectory {
      root.done.remove(event.name)
      consider(root, name: event.name, manifest: root.latestRecords())
      if root.tracker.isTracking(root.folder(event.name)) { noteChange(root, folder: root.folder(event.name)) }
    } else if event.has(WatchMask.delete | WatchMask.movedFrom) {
      folderGone(root, name: event.name)
    } else if event.has(WatchMask.attrib) && event.isDirectory {
      // Its permissions changed: an unreadable folder may be readable (and watchable) now.
      consider(root, name: event.name, manifest: root.latestRecords())
      if root.tracker.isTracking(root.folder(event.name)) { noteChange(root, folder: root.folder(event.name)) }
    }
  }

  // MARK: Roots

  /// Watches the root if it exists (then reconciles and scans it), else its nearest existing parent.
  func establish(_ root: WatchedRoot, reconcile: Bool) {
    // Watch first, then look: a directory created or removed between the two is seen by the look (its event
    // may have come before the watch). Bounded, in case something keeps flapping.
    for _ in 0..<16 {
      if Self.isDirectory(root.path) {
        do {
          try registry.acquire(
            root.path, mask: WatchMask.root, owner: .root(root.path), watcher: watcher)
        } catch {
          // Gone again meanwhile: watch its parent instead.
          if !Self.isDirectory(root.path) { continue }
          root.lastError = (error as? CheckpointError)?.description ?? "\(error)"
          logger.error("cannot watch \(root.path): \(root.lastError ?? "")")
          return
        }
        registry.release(.parent(root: root.path), watcher: watcher)
        let wasPresent = root.present
        root.present = true
        root.lastError = nil
        if !wasPresent {
          logger.info(
            "watching \(root.path) (\(root.config.format.rawValue), \(root.config.dtype.rawValue))")
        }
        if reconcile || !wasPresent {
          if !wasPresent { detectFileSystem(root) }
          findLeftovers(root)
        }
        scan(root)
        return
      }
      root.present = false
      registry.release(.parent(root: root.path), watcher: watcher)
      let parent = nearestParent(of: root.path)
      do {
        try registry.acquire(
          parent, mask: WatchMask.root, owner: .parent(root: root.path), watcher: watcher)
      } catch {
        if !Self.isDirectory(parent) { continue }
        root.lastError = (error as? CheckpointError)?.description ?? "\(error)"
        logger.error("cannot watch \(parent) for \(root.path) to appear: \(root.lastError ?? "")")
        return
      }
      // Created meanwhile, or a nearer parent appeared: look again.
      if Self.isDirectory(root.path) || nearestParent(of: root.path) != parent { continue }
      return
    }
  }

  /// Picks up a missing root once it exists; re-watches the nearest parent when that one went away.
  func establishIfAppeared(_ root: WatchedRoot, force: Bool = false) {
    if Self.isDirectory(root.path) {
      establish(root, reconcile: true)
    } else if force || registry.descriptor(for: nearestParent(of: root.path)) == nil {
      establish(root, reconcile: false)
    }
  }

  func nearestParent(of path: String) -> String {
    var parent = (path as NSString).deletingLastPathComponent
    while !parent.isEmpty && parent != "/" && !Self.isDirectory(parent) {
      parent = (parent as NSString).deletingLastPathComponent
    }
    return parent.isEmpty ? "/" : parent
  }

  /// The root was deleted or moved away: drop its folders and wait for it to come back.
  func rootLost(_ root: WatchedRoot) {
    guard root.present else { return }
    logger.warning("\(root.path) went away; waiting for it to reappear")
    root.present = false
    registry.release(.root(root.path), watcher: watcher)
    registry.release(
      where: { if case .folder(root.path, _) = $0 { true } else { false } }, watcher: watcher)
    for folder in root.tracker.folders {
      root.tracker.forget(folder)
      folderDue[folder] = nil
    }
    root.pending = [:]
    root.done = []
    establish(root, reconcile: false)
  }

  /// Full rescan (overflow, unknown watch descriptor, reload).
  func rescanAll(reason: String) {
    rescans += 1
    logger.notice("rescanning every directory: \(reason)")
    for root in roots.values {
      if root.present && !Self.isDirectory(root.path) {
        rootLost(root)
      } else if root.present {
        // Re-adding the watch is idempotent and repairs a watch lost with the overflow.
        establish(root, reconcile: false)
      } else {
        establishIfAppeared(root, force: true)
      }
    }
  }

  /// Lists the root and tracks every checkpoint folder that is not done yet.
  func scan(_ root: WatchedRoot) {
    let latest = root.latestRecords()
    let names = Reconcile.checkpointFolders(in: root.path, rules: root.tracker.rules)
    for name in names { consider(root, name: name, manifest: latest) }
    dropAbsent(root, present: Set(names))
  }

  /// Forgets what is gone from a listing of the root (scan or poll): tracked folders, done names and the manifest
  /// records of checkpoints not in `present`.
  func dropAbsent(_ root: WatchedRoot, present: Set<String>) {
    for folder in root.tracker.folders
    where !present.contains((folder as NSString).lastPathComponent) {
      folderGone(root, name: (folder as NSString).lastPathComponent)
    }
    root.done = root.done.intersection(present)
    root.keepRecords(only: present)
  }

  /// Decides what to do with one checkpoint folder: done per manifest, or watched (first) and tracked.
  func consider(_ root: WatchedRoot, name: String, manifest: [String: ManifestRecord]) {
    guard !root.converting.contains(name) else { return }
    let folder = root.folder(name)
    if Reconcile.isDone(manifest[name], folder: folder) {
      root.done.insert(name)
      if root.tracker.isTracking(folder) { stopTracking(root, folder: folder) }
      return
    }
    root.done.remove(name)
    do {
      try registry.acquire(
        folder, mask: WatchMask.checkpoint, owner: .folder(root: root.path, folder: folder),
        watcher: watcher)
    } catch {
      // Gone already (its evaluation says so), or the watch limit (a rescan or its settle time re-evaluates it).
      logger.debug("cannot watch \(folder): \(error)")
    }
    if !root.tracker.isTracking(folder) {
      root.tracker.track(folder, now: clock.wallSeconds)
      folderDue[folder] = Due(root: root.path, at: clock.now())
      if let record = manifest[name], let snapshot = FolderSnapshot.take(folder),
        Reconcile.failureStillApplies(record, snapshot: snapshot)
      {
        let error = CheckpointError(.invalidFormat, path: folder, record.error ?? "failed before")
        root.retries.recordFailure(
          folder, fingerprint: snapshot.weightFingerprint, error: error, now: clock.seconds)
      }
    }
  }

  func stopTracking(_ root: WatchedRoot, folder: String) {
    root.tracker.forget(folder)
    folderDue[folder] = nil
    root.pending[(folder as NSString).lastPathComponent] = nil
    registry.release(.folder(root: root.path, folder: folder), watcher: watcher)
  }

  /// A checkpoint folder was deleted or moved away (rotation).
  func folderGone(_ root: WatchedRoot, name: String) {
    let folder = root.folder(name)
    stopTracking(root, folder: folder)
    root.done.remove(name)
    root.retries.clear(folder)
    root.forgetRecord(name)
    if root.converting.contains(name) {
      logger.info("\(folder) removed during its conversion")
    }
  }

  static func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
  }
}
