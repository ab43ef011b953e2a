/// What kind of file system a watched directory lives on, as far as inotify is concerned.
public enum FileSystemClass: String, Sendable, Equatable, Codable {
  /// One kernel sees every write (ext4, xfs, btrfs, tmpfs, zfs, ...): inotify is enough.
  case local
  /// overlayfs: writes through the overlay raise events; writes straight into its layers do not.
  case overlay
  /// A network file system (NFS, SMB/CIFS, AFS, ...): writes from other machines raise no event here.
  case network
  /// A cluster or parallel file system (Lustre, GPFS, CephFS, BeeGFS, ...): the same.
  case cluster
  /// A FUSE mount (s3fs, gcsfuse, JuiceFS, sshfs, bindfs, ...): writes behind the daemon raise no event.
  case fuse
  /// Shared with a host or guest (9p, virtiofs, vboxsf): writes on the other side raise no event.
  case hostShared = "host-shared"
  /// A magic number ckptd does not know.
  case unknown

  /// Whether inotify alone sees every write.
  public var isLocal: Bool { self == .local || self == .overlay }

  /// The words after "<type> is " in the reason `ckptd config check` prints.
  var phrase: String {
    switch self {
    case .local: return "a local file system: inotify sees every write"
    case .overlay:
      return "overlayfs: inotify sees writes through it (set watch = \"poll\" if something writes into its layers)"
    case .network: return "a network file system: writes from other machines raise no inotify event"
    case .cluster: return "a cluster file system: writes from other nodes raise no inotify event"
    case .fuse: return "a FUSE mount: writes made behind it (other nodes, the backing store) raise no inotify event"
    case .hostShared: return "shared with a host or guest: writes on the other side raise no inotify event"
    case .unknown: return "not a file system ckptd knows: polling to be safe"
    }
  }
}

/// A known file system: its statfs magic, its usual mountinfo fstype names, and its class.
struct FileSystemKind: Sendable {
  let magic: UInt64
  let names: [String]
  let fsClass: FileSystemClass

  /// Magic numbers from linux/magic.h, coreutils stat.c and the file systems' own sources
  /// (see shared-filesystems.md section 4). The first name is the one reported when mountinfo says nothing.
  static let table: [FileSystemKind] = [
    FileSystemKind(magic: 0xEF53, names: ["ext4", "ext3", "ext2"], fsClass: .local),
    FileSystemKind(magic: 0x5846_5342, names: ["xfs"], fsClass: .local),
    FileSystemKind(magic: 0x9123_683E, names: ["btrfs"], fsClass: .local),
    FileSystemKind(magic: 0x0102_1994, names: ["tmpfs"], fsClass: .local),
    FileSystemKind(magic: 0x2FC1_2FC1, names: ["zfs"], fsClass: .local),
    FileSystemKind(magic: 0xF2F5_2010, names: ["f2fs"], fsClass: .local),
    FileSystemKind(magic: 0xCA45_1A4E, names: ["bcachefs"], fsClass: .local),
    FileSystemKind(magic: 0x3434, names: ["nilfs2"], fsClass: .local),
    FileSystemKind(magic: 0x5265_4973, names: ["reiserfs"], fsClass: .local),
    FileSystemKind(magic: 0x4D44, names: ["vfat", "msdos"], fsClass: .local),
    FileSystemKind(magic: 0x2011_BAB0, names: ["exfat"], fsClass: .local),
    FileSystemKind(magic: 0x5346_544E, names: ["ntfs3", "ntfs"], fsClass: .local),
    FileSystemKind(magic: 0x794C_7630, names: ["overlay"], fsClass: .overlay),
    FileSystemKind(magic: 0x6969, names: ["nfs", "nfs4"], fsClass: .network),
    FileSystemKind(magic: 0x517B, names: ["smbfs"], fsClass: .network),
    FileSystemKind(magic: 0xFF53_4D42, names: ["cifs", "smb3"], fsClass: .network),
    FileSystemKind(magic: 0xFE53_4D42, names: ["smb3", "cifs"], fsClass: .network),
    FileSystemKind(magic: 0x6B41_4653, names: ["afs"], fsClass: .network),
    FileSystemKind(magic: 0x5346_414F, names: ["afs"], fsClass: .network),
    FileSystemKind(magic: 0x7375_7245, names: ["coda"], fsClass: .network),
    FileSystemKind(magic: 0x0BD0_0BD0, names: ["lustre"], fsClass: .cluster),
    FileSystemKind(magic: 0x4750_4653, names: ["gpfs"], fsClass: .cluster),
    FileSystemKind(magic: 0x00C3_6400, names: ["ceph"], fsClass: .cluster),
    FileSystemKind(magic: 0x1983_0326, names: ["beegfs", "fhgfs"], fsClass: .cluster),
    FileSystemKind(magic: 0x2003_0528, names: ["pvfs2", "orangefs"], fsClass: .cluster),
    FileSystemKind(magic: 0x7461_636F, names: ["ocfs2"], fsClass: .cluster),
    FileSystemKind(magic: 0x0116_1970, names: ["gfs2", "gfs"], fsClass: .cluster),
    FileSystemKind(magic: 0xAAD7_AAEA, names: ["panfs"], fsClass: .cluster),
    FileSystemKind(magic: 0x0131_11A8, names: ["ibrix"], fsClass: .cluster),
    FileSystemKind(magic: 0x6163_6673, names: ["acfs"], fsClass: .cluster),
    FileSystemKind(magic: 0x6573_5546, names: ["fuse", "fuseblk"], fsClass: .fuse),
    FileSystemKind(magic: 0x0102_1997, names: ["9p"], fsClass: .hostShared),
    FileSystemKind(magic: 0x786F_4256, names: ["vboxsf"], fsClass: .hostShared),
    FileSystemKind(magic: 0xBACB_ACBC, names: ["vmhgfs"], fsClass: .hostShared),
    FileSystemKind(magic: 0x7C7C_6673, names: ["prl_fs"], fsClass: .hostShared),
  ]

  static func byMagic(_ magic: UInt64) -> FileSystemKind? {
    table.first { $0.magic == magic }
  }

  /// The class of a mountinfo fstype, for when statfs gave nothing or an unknown magic.
  static func classOf(fsType: String) -> FileSystemClass? {
    if fsType == "virtiofs" { return .hostShared }
    if fsType.hasPrefix("fuse.") || fsType == "fuse" || fsType == "fuseblk" { return .fuse }
    return table.first { $0.names.contains(fsType) }?.fsClass
  }
}
