import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointDaemon

/// The cluster keys: `watch` and `poll_seconds` per drop-in, `node_name` and `claim_ttl_seconds` in the main file.
@Suite struct ClusterConfigTests {
  @Test func defaultsAndValues() throws {
    let empty = try ConfigLoader.parseMain(text: "", path: "/x.toml")
    #expect(empty.nodeName == DaemonConfig.defaultNodeName())
    #expect(!empty.nodeName.isEmpty)
    #expect(empty.claimTTLSeconds == 120)
    let main = try ConfigLoader.parseMain(text: "node_name = \"gpu-07\"\nclaim_ttl_seconds = 2.5", path: "/x.toml")
    #expect(main.nodeName == "gpu-07")
    #expect(main.claimTTL == .milliseconds(2500))

    let plain = try ConfigLoader.parseDropin(text: "path = \"/d\"\nformat = \"bin\"", file: "/w/10.toml")
    #expect(plain.watch == .auto)
    #expect(plain.pollSeconds == 10)
    let polled = try ConfigLoader.parseDropin(
      text: "path = \"/d\"\nformat = \"bin\"\nwatch = \"poll\"\npoll_seconds = 0.2", file: "/w/10.toml")
    #expect(polled.watch == .poll)
    #expect(polled.pollSeconds == 0.2)
  }

  @Test(arguments: [
    ("node_name = \"\"", "node_name must be 1 to 255 characters"),
    ("node_name = 3", "node_name must be a string"),
    ("claim_ttl_seconds = 0", "claim_ttl_seconds must be between 0.1 and 86400, not 0.0"),
    ("claim_ttl_seconds = \"2\"", "claim_ttl_seconds must be a number"),
  ])
  func badMainKeysNameTheFileAndKey(text: String, message: String) {
    #expect {
      try ConfigLoader.parseMain(text: text, path: "/etc/ckptd/ckptd.toml")
    } throws: { error in
      "\(error)".hasPrefix("/etc/ckptd/ckptd.toml: " + message)
    }
  }

  @Test(arguments: [
    ("watch = \"fast\"", "watch must be \"auto\", \"inotify\" or \"poll\", not \"fast\""),
    ("poll_seconds = 0", "poll_seconds must be between 0.05 and 86400, not 0.0"),
    ("poll_seconds = true", "poll_seconds must be a number"),
  ])
  func badDropinKeysNameTheFileAndKey(line: String, message: String) {
    #expect {
      try ConfigLoader.parseDropin(text: "path = \"/d\"\nformat = \"bin\"\n" + line, file: "/w/10.toml")
    } throws: { error in
      "\(error)".hasPrefix("/w/10.toml: " + message)
    }
  }

  @Test func configCheckShowsTheFileSystemModeAndWhy() throws {
    let dir = CoreTempDir()
    try dir.write("watch.d/10-a.toml", "path = \"/mnt/shared/run\"\nformat = \"bin\"\npoll_seconds = 0.5")
    try dir.write("watch.d/20-b.toml", "path = \"/scratch/run\"\nformat = \"bin\"")
    try dir.write("ckptd.toml", "dropin_dirs = [\"watch.d\"]\nnode_name = \"n1\"\nclaim_ttl_seconds = 2")
    let config = try ConfigLoader.load(path: dir.sub("ckptd.toml"))
    let mountinfo = """
      22 1 8:1 / / rw - ext4 /dev/sda1 rw
      40 22 0:50 / /mnt/shared rw - nfs4 filer:/export rw
      """
    let report = ConfigReport.render(config) { watch in
      let magic: UInt64 = watch.path.hasPrefix("/mnt/shared") ? 0x6969 : 0xEF53
      return FileSystemDetection.classify(
        fType: magic, mountinfo: mountinfo, path: watch.path, setting: watch.watch)
    }
    #expect(report.contains("node_name:    n1"))
    #expect(report.contains("claim_ttl_seconds: 2"))
    #expect(report.contains("  poll_seconds = 0.5"))
    #expect(report.contains("  file system: nfs4 (f_type 0x6969, mounted at /mnt/shared)"))
    #expect(
      report.contains(
        "  watch mode: poll (inotify + every 0.5 s): nfs4 is a network file system: writes from other machines"))
    #expect(report.contains("  file system: ext4 (f_type 0xef53, mounted at /)"))
    #expect(report.contains("  watch mode: inotify: ext4 is a local file system"))
    #expect(report.contains("  last poll: none (no daemon running)"))
    var running = StatusSnapshot(pid: 77, version: "x")
    var polled = DirectoryStatus(path: "/mnt/shared/run", format: "bin", dtype: "keep")
    polled.lastPoll = PollFigures(at: Date(timeIntervalSince1970: 1_800_000_000), seconds: 0.0034)
    running.directories = [polled]
    let live = ConfigReport.render(
      config,
      detect: { watch in
        FileSystemDetection.classify(
          fType: watch.path.hasPrefix("/mnt/shared") ? 0x6969 : 0xEF53, mountinfo: mountinfo, path: watch.path)
      }, running: running)
    #expect(live.contains("  last poll: 2027-01-15T08:00:00.000Z, took 3.4 ms (daemon pid 77)"))
    #expect(live.components(separatedBy: "last poll").count == 2, "only the polled directory has a last poll")
  }
}
