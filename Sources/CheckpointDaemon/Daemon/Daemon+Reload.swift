import CheckpointFormats
import Foundation
import Logging

extension Daemon {
  /// Watches every existing drop-in directory (a file added, changed or removed there reloads), and the
  /// nearest existing parent of each missing one (it reloads when it appears).
  func watchDropinDirectories() {
    // Watch first, then look (as for roots): a directory that appeared meanwhile is watched and reloads.
    for _ in 0..<16 {
      registry.release(.dropins, watcher: watcher)
      registry.release(where: { if case .dropinParent = $0 { true } else { false } }, watcher: watcher)
      var parents: [String: String] = [:]
      for dir in config.dropinDirs {
        let exists = Self.isDirectory(dir)
        let (path, owner, mask) =
          exists
          ? (dir, WatchOwner.dropins, WatchMask.root | WatchMask.closeWrite)
          : (nearestParent(of: dir), WatchOwner.dropinParent(dir), WatchMask.root)
        if !exists { parents[dir] = path }
        do {
          try registry.acquire(path, mask: mask, owner: owner, watcher: watcher)
        } catch {
          logger.warning("cannot watch \(path) for drop-in directory \(dir): \(error)")
        }
      }
      let changed = parents.filter { dir, parent in Self.isDirectory(dir) || nearestParent(of: dir) != parent }
      if changed.isEmpty { return }
      if changed.keys.contains(where: Self.isDirectory) { scheduleReload() }
    }
  }

  /// Reloads once a burst of drop-in changes is over (`reloadDelay` on the clock).
  func scheduleReload() {
    guard reloadAt == nil else { return }
    reloadAt = clock.now() + options.reloadDelay
  }

  /// Reloads the configuration: RELOADING=1, apply, READY=1. A broken main file keeps the old settings.
  func reloadNow(reason: String) {
    guard !stopping else { return }
    logger.info("reloading (\(reason))")
    _ = options.notifier.reloading()
    publisher.update { $0.state = .reloading }
    do {
      let fresh = try ConfigLoader.load(path: options.configPath)
      reloadError = nil
      apply(fresh)
    } catch {
      let text = (error as? CheckpointError)?.description ?? "\(error)"
      logger.error("reload failed, keeping the previous settings: \(text)")
      reloadError = DropinProblem(file: options.configPath, message: text)
    }
    publisher.update { $0.state = .running }
    publishStatus()
    flushStatus()
    _ = options.notifier.ready(status: summaryLine())
  }

  /// Applies a freshly loaded configuration: new roots are watched, removed ones dropped, changed ones
  /// updated; then a full rescan.
  func apply(_ fresh: DaemonConfig) {
    let oldDropins = config.dropinDirs
    if fresh.nodeName != config.nodeName || fresh.claimTTL != config.claimTTL {
      claimBook = ClaimBook(identity: .current(node: fresh.nodeName), ttl: fresh.claimTTL, clock: options.clock)
    }
    config = fresh
    for problem in fresh.problems { logger.error("drop-in skipped: \(problem.description)") }
    var wanted: [String: WatchConfig] = [:]
    for watch in fresh.watches where wanted[watch.path] == nil { wanted[watch.path] = watch }
    for (path, root) in roots where wanted[path] == nil {
      logger.info("no longer watching \(path)")
      registry.release(
        where: { owner in
          switch owner {
          case .root(let p), .parent(let p), .folder(let p, _): p == path
          case .dropins, .dropinParent: false
          }
        }, watcher: watcher)
      // Its conversions are abandoned (temporaries removed), as on SIGTERM.
      cancelConversions(of: path)
      for folder in root.tracker.folders { folderDue[folder] = nil }
      roots[path] = nil
    }
    for (path, watch) in wanted {
      if let root = roots[path] {
        if root.config != watch { root.update(watch) }
        detectFileSystem(root)
      } else {
        let root = makeRoot(watch)
        roots[path] = root
        detectFileSystem(root)
        establish(root, reconcile: true)
      }
    }
    if oldDropins != fresh.dropinDirs
      || registry.owners.values.allSatisfy({ set in
        !set.contains { if case .dropins = $0 { true } else if case .dropinParent = $0 { true } else { false } }
      })
    {
      watchDropinDirectories()
    }
    rescanAll(reason: "reload")
  }
}
