import CInotifyTools

/// One change the kernel reported, copied out of libinotifytools' static buffer before the next call.
public struct InotifyEvent: Sendable, Equatable {
  /// The watch descriptor; -1 for a queue overflow.
  public var wd: Int32
  /// The `IN_*` bits.
  public var mask: UInt32
  /// Pairs `IN_MOVED_FROM` with `IN_MOVED_TO`.
  public var cookie: UInt32
  /// The entry name inside the watched directory; empty for events about the directory itself.
  public var name: String
  /// The watched directory, from the watcher's own wd map (never libinotifytools' path table).
  public var directory: String

  /// Creates an event value.
  public init(wd: Int32, mask: UInt32, cookie: UInt32 = 0, name: String, directory: String) {
    self.wd = wd
    self.mask = mask
    self.cookie = cookie
    self.name = name
    self.directory = directory
  }

  /// The full path of the entry the event is about.
  public var path: String { name.isEmpty ? directory : directory + "/" + name }

  /// True when the entry is a directory.
  public var isDirectory: Bool { has(WatchMask.isDirectory) }

  /// True when any of `bits` is set.
  public func has(_ bits: UInt32) -> Bool { mask & bits != 0 }
}

/// What the watcher delivers: an event, or a request to rescan everything because events were lost.
public enum WatcherMessage: Sendable, Equatable {
  /// A kernel event on a known watch.
  case event(InotifyEvent)
  /// Events may have been lost (queue overflow, unknown watch descriptor): rescan from the filesystem.
  case rescan(reason: String)
}

/// The `IN_*` masks the daemon uses, as `UInt32`.
public enum WatchMask {
  public static let create = UInt32(IN_CREATE)
  public static let closeWrite = UInt32(IN_CLOSE_WRITE)
  public static let modify = UInt32(IN_MODIFY)
  public static let attrib = UInt32(IN_ATTRIB)
  public static let movedFrom = UInt32(IN_MOVED_FROM)
  public static let movedTo = UInt32(IN_MOVED_TO)
  public static let delete = UInt32(IN_DELETE)
  public static let deleteSelf = UInt32(IN_DELETE_SELF)
  public static let moveSelf = UInt32(IN_MOVE_SELF)
  public static let ignored = UInt32(IN_IGNORED)
  public static let overflow = UInt32(IN_Q_OVERFLOW)
  public static let isDirectory = UInt32(IN_ISDIR)
  public static let onlyDirectory = UInt32(IN_ONLYDIR)

  /// An output root (or a parent waiting for one, or a drop-in directory): entries coming and going, and
  /// their permissions changing (a checkpoint folder that could not be read may be readable now).
  public static let root = create | movedTo | movedFrom | delete | deleteSelf | moveSelf | attrib | onlyDirectory
  /// A checkpoint folder while it is pending: files written, renamed in, created, removed, touched or chmod-ed
  /// (a failed checkpoint is retried when its files change, and `touch` or `chmod` is such a change).
  public static let checkpoint =
    closeWrite | movedTo | create | delete | modify | movedFrom | deleteSelf | moveSelf | attrib | onlyDirectory
}
