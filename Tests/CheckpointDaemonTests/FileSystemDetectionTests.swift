import Foundation
import Testing

@testable import CheckpointDaemon

/// File-system detection against mountinfo and statfs fixtures of file systems that cannot be mounted here.
@Suite struct FileSystemDetectionTests {
  /// A mountinfo text: the root file system plus `lines`.
  static func mountinfo(_ lines: String...) -> String {
    (["22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro"] + lines).joined(separator: "\n")
      + "\n"
  }

  struct Case: Sendable, CustomTestStringConvertible {
    var label: String
    var magic: UInt64?
    var line: String
    var path: String
    var type: String
    var fsClass: FileSystemClass
    var mode: WatchMode
    var testDescription: String { label }
  }

  static let cases: [Case] = [
    Case(
      label: "NFS v4", magic: 0x6969,
      line: "412 22 0:54 / /mnt/shared rw,relatime shared:220 - nfs4 filer:/export/shared rw,vers=4.2,hard,proto=tcp",
      path: "/mnt/shared/runs/a", type: "nfs4", fsClass: .network, mode: .poll),
    Case(
      label: "NFS v3", magic: 0x6969,
      line: "413 22 0:55 / /nfs rw,relatime - nfs filer:/vol/home rw,vers=3,rsize=65536,nolock",
      path: "/nfs/u/run", type: "nfs", fsClass: .network, mode: .poll),
    Case(
      label: "Lustre", magic: 0x0BD0_0BD0,
      line: "300 22 0:60 / /lustre/scratch rw,relatime shared:150 - lustre 10.0.0.1@o2ib:/scratch rw,flock,lazystatfs",
      path: "/lustre/scratch/job/out", type: "lustre", fsClass: .cluster, mode: .poll),
    Case(
      label: "GPFS", magic: 0x4750_4653,
      line: "301 22 0:61 / /gpfs/fs1 rw,relatime shared:151 - gpfs fs1 rw",
      path: "/gpfs/fs1/proj/run", type: "gpfs", fsClass: .cluster, mode: .poll),
    Case(
      label: "CephFS", magic: 0x00C3_6400,
      line: "302 22 0:62 / /mnt/cephfs rw,relatime shared:152 - ceph 10.0.0.2:6789:/ rw,name=admin,secret=<hidden>,acl",
      path: "/mnt/cephfs/x", type: "ceph", fsClass: .cluster, mode: .poll),
    Case(
      label: "BeeGFS", magic: 0x1983_0326,
      line: "303 22 0:63 / /mnt/beegfs rw,relatime shared:153 - beegfs beegfs_nodev rw,cfgFile=/etc/beegfs/c.conf",
      path: "/mnt/beegfs/ckpt", type: "beegfs", fsClass: .cluster, mode: .poll),
    Case(
      label: "CIFS", magic: 0xFF53_4D42,
      line: "304 22 0:64 / /mnt/smb rw,relatime shared:154 - cifs //server/share rw,vers=3.1.1,cache=strict",
      path: "/mnt/smb/r", type: "cifs", fsClass: .network, mode: .poll),
    Case(
      label: "SMB3", magic: 0xFE53_4D42,
      line: "305 22 0:65 / /mnt/smb3 rw,relatime - smb3 //server/share rw,vers=3.1.1",
      path: "/mnt/smb3", type: "smb3", fsClass: .network, mode: .poll),
    Case(
      label: "FUSE JuiceFS", magic: 0x6573_5546,
      line:
        "306 22 0:66 / /jfs rw,relatime shared:155 - fuse.juicefs JuiceFS:myjfs rw,user_id=0,group_id=0,allow_other",
      path: "/jfs/runs", type: "fuse.juicefs", fsClass: .fuse, mode: .poll),
    Case(
      label: "FUSE sshfs", magic: 0x6573_5546,
      line: "307 22 0:67 / /mnt/ssh rw,nosuid,nodev,relatime shared:156 - fuse.sshfs user@host:/data rw,user_id=1000",
      path: "/mnt/ssh/r", type: "fuse.sshfs", fsClass: .fuse, mode: .poll),
    Case(
      label: "FUSE s3fs", magic: 0x6573_5546,
      line: "308 22 0:68 / /mnt/s3 rw,nosuid,nodev,relatime shared:157 - fuse.s3fs s3fs rw,user_id=0,group_id=0",
      path: "/mnt/s3/bucket/run", type: "fuse.s3fs", fsClass: .fuse, mode: .poll),
    Case(
      label: "bare fuse named by its source", magic: 0x6573_5546,
      line: "309 22 0:69 / /mnt/py rw,nosuid,nodev,relatime shared:158 - fuse pypassthrough rw,user_id=0,group_id=0",
      path: "/mnt/py/run", type: "fuse.pypassthrough", fsClass: .fuse, mode: .poll),
    Case(
      label: "bare fuse with a path source", magic: 0x6573_5546,
      line: "310 22 0:70 / /mnt/img rw,relatime - fuseblk /dev/sdc1 rw,user_id=0,group_id=0",
      path: "/mnt/img/run", type: "fuseblk", fsClass: .fuse, mode: .poll),
    Case(
      label: "9p", magic: 0x0102_1997,
      line: "311 22 0:71 / /mnt/host rw,relatime - 9p hostshare rw,trans=virtio,version=9p2000.L",
      path: "/mnt/host/r", type: "9p", fsClass: .hostShared, mode: .poll),
    Case(
      label: "virtiofs (FUSE magic)", magic: 0x6573_5546,
      line: "312 22 0:72 / /mnt/vfs rw,relatime - virtiofs myfs rw",
      path: "/mnt/vfs/r", type: "virtiofs", fsClass: .hostShared, mode: .poll),
    Case(
      label: "overlay", magic: 0x794C_7630,
      line: "313 22 0:73 / /srv rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w",
      path: "/srv/runs", type: "overlay", fsClass: .overlay, mode: .inotify),
    Case(
      label: "ext4", magic: 0xEF53, line: "314 22 8:17 / /scratch rw,relatime - ext4 /dev/sdb1 rw",
      path: "/scratch/runs", type: "ext4", fsClass: .local, mode: .inotify),
    Case(
      label: "xfs", magic: 0x5846_5342, line: "315 22 8:33 / /data rw,relatime - xfs /dev/sdc1 rw,attr2,inode64",
      path: "/data/runs", type: "xfs", fsClass: .local, mode: .inotify),
    Case(
      label: "tmpfs", magic: 0x0102_1994, line: "316 22 0:30 / /tmp rw,nosuid,nodev shared:3 - tmpfs tmpfs rw",
      path: "/tmp/r", type: "tmpfs", fsClass: .local, mode: .inotify),
  ]

  @Test(arguments: cases) func classifiesFixtures(_ fixture: Case) {
    let report = FileSystemDetection.classify(
      fType: fixture.magic, mountinfo: Self.mountinfo(fixture.line), path: fixture.path)
    #expect(report.type == fixture.type)
    #expect(report.fsClass == fixture.fsClass)
    #expect(report.mode == fixture.mode)
    #expect(report.isLocal == (fixture.mode == .inotify))
    #expect(report.reason.hasPrefix(fixture.type + " is "))
    #expect(report.mountPoint != "/")
  }

  @Test func longestMountPointWinsAndPrefixesMustEndAtASlash() {
    let text = Self.mountinfo(
      "30 22 8:2 / /data rw - xfs /dev/sdb1 rw",
      "31 30 0:50 / /data/shared rw - nfs4 filer:/s rw",
      "32 22 0:51 / /database rw - btrfs /dev/sdc rw")
    let entries = MountInfoEntry.parse(text)
    #expect(MountInfoEntry.containing("/data/shared/run", in: entries)?.fsType == "nfs4")
    #expect(MountInfoEntry.containing("/data/shared", in: entries)?.fsType == "nfs4")
    #expect(MountInfoEntry.containing("/data/sharedx", in: entries)?.fsType == "xfs")
    #expect(MountInfoEntry.containing("/database/x", in: entries)?.fsType == "btrfs")
    #expect(MountInfoEntry.containing("/etc", in: entries)?.fsType == "ext4")
  }

  @Test func theMountOnTopWinsAndEscapesAreUndone() {
    let text = Self.mountinfo(
      "40 22 0:52 / /mnt/my\\040share rw - ext4 /dev/sdd rw",
      "41 40 0:53 / /mnt/my\\040share rw master:7 shared:9 - cifs //srv/a\\040b rw")
    let entries = MountInfoEntry.parse(text)
    let top = MountInfoEntry.containing("/mnt/my share/run", in: entries)
    #expect(top?.fsType == "cifs")
    #expect(top?.source == "//srv/a b")
    #expect(top?.mountPoint == "/mnt/my share")
  }

  @Test func theMagicNumberWinsOverTheMountTable() {
    // mountinfo says ext4 but statfs says NFS: the kernel's answer decides.
    let report = FileSystemDetection.classify(
      fType: 0x6969, mountinfo: Self.mountinfo("50 22 8:1 / /x rw - ext4 /dev/sde rw"), path: "/x/y")
    #expect(report.type == "nfs")
    #expect(report.mode == .poll)
  }

  @Test func unknownOrMissingMagicFallsBackToTheMountTableThenToPolling() {
    let viaTable = FileSystemDetection.classify(
      fType: nil, mountinfo: Self.mountinfo("60 22 0:9 / /n rw - nfs4 f:/e rw"), path: "/n/r")
    #expect(viaTable.type == "nfs4")
    #expect(viaTable.fsClass == .network)
    #expect(viaTable.mode == .poll)
    #expect(viaTable.magicHex == "?")
    let unknown = FileSystemDetection.classify(
      fType: 0x1234_5678, mountinfo: Self.mountinfo("61 22 0:9 / /q rw - weirdfs q rw"), path: "/q/r")
    #expect(unknown.type == "weirdfs")
    #expect(unknown.fsClass == .unknown)
    #expect(unknown.mode == .poll)
    #expect(unknown.reason.contains("f_type 0x12345678"))
    let nothing = FileSystemDetection.classify(fType: nil, mountinfo: "", path: "/a")
    #expect(nothing.mode == .poll)
  }

  @Test func theWatchSettingOverridesTheChoiceAndSaysSo() {
    let nfs = Self.mountinfo("70 22 0:9 / /n rw - nfs4 f:/e rw")
    let forced = FileSystemDetection.classify(fType: 0x6969, mountinfo: nfs, path: "/n/r", setting: .inotify)
    #expect(forced.mode == .inotify)
    #expect(forced.reason == "watch = \"inotify\" (nfs4 is not local)")
    let polled = FileSystemDetection.classify(
      fType: 0xEF53, mountinfo: Self.mountinfo(), path: "/home/r", setting: .poll)
    #expect(polled.mode == .poll)
    #expect(polled.reason == "watch = \"poll\" (ext4 is local)")
  }

  @Test func localDirectoryIsDetectedWithStatfsAndMountinfo() throws {
    let dir = CoreTempDir()
    let report = FileSystemDetection.detect(path: dir.path)
    #expect(report.magic != nil)
    #expect(report.mountPoint != nil)
    // A folder not created yet is judged by its parent.
    let later = FileSystemDetection.detect(path: dir.path + "/not/yet")
    #expect(later.type == report.type)
    #expect(later.magic == report.magic)
  }

  @Test func bindfsMountIsDetectedAsFuseAndPolled() throws {
    guard let mount = try BindfsMount.make(subtype: "ckptdtest") else { return }
    defer { mount.unmount() }
    let report = FileSystemDetection.detect(path: mount.mountPoint + "/run")
    #expect(report.type == "fuse.ckptdtest")
    #expect(report.magic == 0x6573_5546)
    #expect(report.fsClass == .fuse)
    #expect(report.mode == .poll)
    #expect(report.mountPoint == mount.mountPoint)
    let backing = FileSystemDetection.detect(path: mount.backing)
    #expect(backing.fsClass != .fuse)
  }
}

/// A bindfs mount of a fresh backing folder with fresh attributes (shared-filesystems.md). nil (with a message)
/// when not root or bindfs is missing; CI runs as root with bindfs installed.
final class BindfsMount {
  let backing: String
  let mountPoint: String
  private let dir: CoreTempDir

  private init(dir: CoreTempDir) {
    self.dir = dir
    backing = dir.path + "/B"
    mountPoint = dir.path + "/M"
  }

  static func make(subtype: String) throws -> BindfsMount? {
    guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/bindfs"),
      FileManager.default.fileExists(atPath: "/dev/fuse")
    else {
      print("skipped: needs root, /dev/fuse and /usr/bin/bindfs")
      return nil
    }
    let mount = BindfsMount(dir: CoreTempDir("ckptd-bindfs"))
    try FileManager.default.createDirectory(atPath: mount.backing, withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: mount.mountPoint, withIntermediateDirectories: true)
    let status = try run(
      "/usr/bin/bindfs",
      ["-o", "attr_timeout=0,entry_timeout=0,negative_timeout=0,subtype=\(subtype)", mount.backing, mount.mountPoint])
    #expect(status == 0, "bindfs failed to mount")
    return status == 0 ? mount : nil
  }

  func unmount() {
    _ = try? BindfsMount.run("/bin/umount", [mountPoint])
  }

  /// Runs a command and waits for it with waitpid(2) (bindfs forks its daemon and exits).
  @discardableResult
  static func run(_ executable: String, _ arguments: [String]) throws -> Int32 {
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    guard posix_spawn(&pid, executable, nil, nil, argv, environ) == 0 else { return -1 }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -1
  }
}
