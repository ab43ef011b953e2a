import CheckpointFormats
import Foundation
import Logging

extension Daemon {
  /// Watches every existing drop-in directory: a file added, changed or removed there reloads.
  func watchDropinDirectories() {
    registry.release(.dropins, watcher: watcher)
    for dir in config.dropinDirs where Self.isDirectory(dir) {
      do {
        try registry.acquire(
          dir, mask: WatchMask.root | WatchMask.closeWrite, owner: .dropins, watcher: watcher)
      } catch {
        logger.warning("cannot watch drop-in directory \(dir): \(error)")
      }
    }
  }

  /// Reloads shortly after a burst of drop-in changes.
  func scheduleReload() {
    guard !reloadScheduled else { return }
    reloadScheduled = true
    loop.asyncAfter(deadline: .now() + 0.3) { [self] in
      reloadScheduled = false
      reloadNow(reason: "drop-in directory changed")
    }
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
    publisher.flush()
    _ = options.notifier.ready(status: summaryLine())
  }

  /// Applies a freshly loaded configuration: new roots are watched, removed ones dropped, changed ones
  /// updated; then a full rescan.
  func apply(_ fresh: DaemonConfig) {
    let oldDropins = config.dropinDirs
    config = fresh
    for problem in fresh.problems { logger.error("drop-in skipped: \(problem.description)") }
    queue.setWorkers(fresh.workers)
    var wanted: [String: WatchConfig] = [:]
    for watch in fresh.watches where wanted[watch.path] == nil { wanted[watch.path] = watch }
    for (path, root) in roots where wanted[path] == nil {
      logger.info("no longer watching \(path)")
      registry.release(
        where: { owner in
          switch owner {
          case .root(let p), .parent(let p), .folder(let p, _): p == path
          case .dropins: false
          }
        }, watcher: watcher)
      // Its conversions are abandoned (temporaries removed), as on SIGTERM.
      for name in root.converting { queue.cancel(root.folder(name)) }
      roots[path] = nil
    }
    for (path, watch) in wanted {
      if let root = roots[path] {
        if root.config != watch { root.update(watch) }
      } else {
        let root = WatchedRoot(config: watch, structuralCheck: options.structuralCheck)
        roots[path] = root
        establish(root, reconcile: true)
      }
    }
    if oldDropins != fresh.dropinDirs
      || registry.owners.values.allSatisfy({ !$0.contains(.dropins) })
    {
      watchDropinDirectories()
    }
    rescanAll(reason: "reload")
  }
}
