import CLinux
import Foundation
import Testing

@testable import CheckpointFormats

/// `OutputFile.commit(replace: false)` on a FUSE mount, where renameat2(RENAME_NOREPLACE) fails with EINVAL:
/// the link()+unlink() fallback commits, and still refuses to replace. Needs root, /dev/fuse and bindfs (CI has
/// them); prints a message and checks nothing else otherwise.
@Suite struct OutputFileCommitFuseTests {
  @Test func noReplaceCommitWorksOnABindfsMount() throws {
    guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/bindfs"),
      FileManager.default.fileExists(atPath: "/dev/fuse")
    else {
      print("skipped: needs root, /dev/fuse and /usr/bin/bindfs")
      return
    }
    let base = FileManager.default.temporaryDirectory.path + "/ckptd-commit-fuse-\(UUID().uuidString.prefix(8))"
    let backing = base + "/B"
    let mount = base + "/M"
    try FileManager.default.createDirectory(atPath: backing, withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: base) }
    let status = Self.run(
      "/usr/bin/bindfs", ["-o", "attr_timeout=0,entry_timeout=0,negative_timeout=0,subtype=ckptdtest", backing, mount])
    try #require(status == 0, "bindfs failed")
    defer { Self.run("/bin/umount", [mount]) }

    // The premise: this mount refuses the rename flag.
    let probe = mount + "/probe"
    #expect(FileManager.default.createFile(atPath: probe, contents: Data([1])))
    #expect(ckptd_rename_noreplace(probe, mount + "/probe2") != 0 && errno == EINVAL)

    let output = try OutputFile(path: mount + "/model.bin")
    try output.write(Array("weights".utf8))
    try output.commit(replace: false)
    #expect(try String(contentsOfFile: backing + "/model.bin", encoding: .utf8) == "weights")
    let names = try FileManager.default.contentsOfDirectory(atPath: backing)
    #expect(!names.contains { $0.hasPrefix(OutputFile.temporaryPrefix) })

    let second = try OutputFile(path: mount + "/model.bin")
    try second.write(Array("other".utf8))
    #expect {
      try second.commit(replace: false)
    } throws: { error in
      (error as? CheckpointError)?.code == .exists
    }
    #expect(try String(contentsOfFile: backing + "/model.bin", encoding: .utf8) == "weights")
    let after = try FileManager.default.contentsOfDirectory(atPath: backing)
    #expect(!after.contains { $0.hasPrefix(OutputFile.temporaryPrefix) })
  }

  @discardableResult
  static func run(_ executable: String, _ arguments: [String]) -> Int32 {
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    guard posix_spawn(&pid, executable, nil, nil, argv, environ) == 0 else { return -1 }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -1
  }
}
