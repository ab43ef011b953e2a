import CheckpointFormats
import Foundation
import Testing

@testable import CheckpointDaemon

@Suite struct ConfigTests {
  static let validDropin = """
    path = "/data/runs/a"
    format = "bin"
    """

  @Test func mainFileDefaultsAndValues() throws {
    let dir = CoreTempDir()
    let file = try dir.write(
      "ckptd.toml",
      """
      status_file = "/run/x/status.json"
      dropin_dirs = ["/etc/x/watch.d"]
      workers = 3
      log_level = "debug"
      """)
    let config = try ConfigLoader.load(path: file)
    #expect(config.statusFile == "/run/x/status.json")
    #expect(config.dropinDirs == ["/etc/x/watch.d"])
    #expect(config.workers == 3)
    #expect(config.logLevel == "debug")
    #expect(config.watches.isEmpty)
    #expect(config.configFile == file)

    let empty = try ConfigLoader.parseMain(text: "", path: "/x.toml")
    #expect(empty.statusFile == DaemonConfig.defaultStatusFile)
    #expect(empty.dropinDirs == DaemonConfig.defaultDropinDirs)
    #expect(empty.workers == 1)
    #expect(empty.logLevel == "info")
  }

  @Test(arguments: [
    ("workers = 0", "workers must be 1 or more"),
    ("workers = \"2\"", "workers must be an integer"),
    ("log_level = \"loud\"", "log_level must be one of"),
    ("status_file = 3", "status_file must be a string"),
    ("status_file = \"\"", "status_file must not be empty"),
    ("dropin_dirs = \"watch.d\"", "dropin_dirs must be an array of strings"),
    ("dropin_dirs = [1]", "dropin_dirs must be an array of strings"),
    ("wokers = 2", "unknown key \"wokers\""),
    ("workers = ", "not valid TOML at line 1"),
  ])
  func mainFileErrorsThrowWithFileAndReason(text: String, expected: String) throws {
    let dir = CoreTempDir()
    let file = try dir.write("ckptd.toml", text)
    let error = #expect(throws: CheckpointError.self) { try ConfigLoader.load(path: file) }
    #expect(error?.path == file)
    #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
  }

  @Test func missingMainFileThrows() {
    let error = #expect(throws: CheckpointError.self) { try ConfigLoader.load(path: "/nonexistent/ckptd.toml") }
    #expect(error?.code == .io)
    #expect(error?.path == "/nonexistent/ckptd.toml")
  }

  @Test func defaultPathFromEnvironment() {
    #expect(ConfigLoader.defaultPath(environment: [:]) == "/etc/ckptd/ckptd.toml")
    #expect(ConfigLoader.defaultPath(environment: ["CKPTD_CONFIG": "/tmp/c.toml"]) == "/tmp/c.toml")
    #expect(ConfigLoader.defaultPath(environment: ["CKPTD_CONFIG": ""]) == "/etc/ckptd/ckptd.toml")
  }

  @Test func dropinDefaultsAndEveryKey() throws {
    let minimal = try ConfigLoader.parseDropin(text: Self.validDropin, file: "/w/10-a.toml")
    #expect(minimal == WatchConfig(path: "/data/runs/a", format: .torch, sourceFile: "/w/10-a.toml"))
    #expect(minimal.pattern == "checkpoint-*")
    #expect(minimal.readyMarker == "trainer_state.json")
    #expect(minimal.settleSeconds == 10)
    #expect(minimal.keepSource && minimal.verify)
    #expect(minimal.manifestPath == "/data/runs/a/.ckptd-manifest.jsonl")

    let full = try ConfigLoader.parseDropin(
      text: """
        path = "/data/runs/b/"
        format = "safetensors"
        dtype = "bf16"
        pattern = "ckpt-*"
        ready_marker = ""
        settle_seconds = 2.5
        keep_source = false
        verify = true
        manifest = "meta/manifest.jsonl"
        """, file: "/w/20-b.toml")
    #expect(full.path == "/data/runs/b")
    #expect(full.format == .safetensors)
    #expect(full.dtype == .bf16)
    #expect(full.pattern == "ckpt-*")
    #expect(full.readyMarker == "")
    #expect(full.settleSeconds == 2.5)
    #expect(!full.keepSource)
    #expect(full.verify)
    #expect(full.manifestPath == "/data/runs/b/meta/manifest.jsonl")
    let integerSettle = try ConfigLoader.parseDropin(text: Self.validDropin + "\nsettle_seconds = 0", file: "/w/x.toml")
    #expect(integerSettle.settleSeconds == 0)
  }

  @Test(arguments: [
    ("format = \"bin\"", "path is required"),
    ("path = \"runs/a\"\nformat = \"bin\"", "path must be absolute"),
    ("path = \"/a\"", "format is required"),
    ("path = \"/a\"\nformat = \"pt\"", "format must be \"bin\" or \"safetensors\""),
    ("path = \"/a\"\nformat = \"bin\"\ndtype = \"f64\"", "dtype must be one of"),
    ("path = \"/a\"\nformat = \"bin\"\npattern = \"a/b\"", "pattern must be"),
    ("path = \"/a\"\nformat = \"bin\"\npattern = \"\"", "pattern must be"),
    ("path = \"/a\"\nformat = \"bin\"\nready_marker = \"x/y\"", "ready_marker must be"),
    ("path = \"/a\"\nformat = \"bin\"\nsettle_seconds = -1", "settle_seconds must be between"),
    ("path = \"/a\"\nformat = \"bin\"\nsettle_seconds = \"10\"", "settle_seconds must be a number"),
    ("path = \"/a\"\nformat = \"bin\"\nkeep_source = \"no\"", "keep_source must be true or false"),
    ("path = \"/a\"\nformat = \"bin\"\nverify = 1", "verify must be true or false"),
    ("path = \"/a\"\nformat = \"bin\"\nkeep_source = false\nverify = false", "keep_source = false needs verify"),
    ("path = \"/a\"\nformat = \"bin\"\nmanifest = \"../m.jsonl\"", "manifest must be"),
    ("path = \"/a\"\nformat = \"bin\"\nmanifest = \"\"", "manifest must be"),
    ("path = \"/a\"\nformat = \"bin\"\nsettle = 3", "unknown key \"settle\""),
    ("path = \"/a\"\nformat = \"bin\"\n[extra]\nx = 1", "unknown key \"extra\""),
    ("path = \"/a\nformat = \"bin\"", "not valid TOML"),
  ])
  func dropinErrorsNameTheKey(text: String, expected: String) {
    let error = #expect(throws: CheckpointError.self) { try ConfigLoader.parseDropin(text: text, file: "/w/x.toml") }
    #expect(error?.path == "/w/x.toml")
    #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
  }

  /// Three folders: /etc-like masks /run-like masks /usr/lib-like by name; empty file and /dev/null symlink mask;
  /// survivors apply in file-name order whatever their folder.
  @Test func precedenceMaskingAndOrderAcrossThreeDirs() throws {
    let dir = CoreTempDir()
    let etc = dir.sub("etc"), run = dir.sub("run"), lib = dir.sub("lib")
    func dropin(_ path: String, _ format: String = "bin") -> String { "path = \"\(path)\"\nformat = \"\(format)\"" }
    try dir.write("etc/20-b.toml", dropin("/b-etc", "safetensors"))
    try dir.write("run/20-b.toml", dropin("/b-run"))
    try dir.write("lib/20-b.toml", dropin("/b-lib"))
    try dir.write("run/10-a.toml", dropin("/a-run"))
    try dir.write("lib/10-a.toml", dropin("/a-lib"))
    try dir.write("lib/30-c.toml", dropin("/c-lib"))
    try dir.write("etc/30-c.toml", "")  // empty file masks
    try dir.write("lib/40-d.toml", dropin("/d-lib"))
    try FileManager.default.createSymbolicLink(atPath: run + "/40-d.toml", withDestinationPath: "/dev/null")
    try dir.write("lib/60-f.toml", dropin("/f-lib"))
    try FileManager.default.createSymbolicLink(atPath: dir.sub("nul"), withDestinationPath: "/dev/null")
    try FileManager.default.createSymbolicLink(atPath: etc + "/60-f.toml", withDestinationPath: dir.sub("nul"))
    try dir.write("lib/05-first.toml", dropin("/first"))
    try dir.write("etc/README.md", "not a drop-in")
    try dir.write("etc/50-e.toml.disabled", dropin("/e"))
    try dir.write("main.toml", "dropin_dirs = [\"\(etc)\", \"\(run)\", \"\(lib)\", \"\(dir.sub("none"))\"]")

    let config = try ConfigLoader.load(path: dir.sub("main.toml"))
    #expect(config.problems == [])
    #expect(config.watches.map(\.path) == ["/first", "/a-run", "/b-etc"])
    #expect(config.watches.map(\.sourceFile) == [lib + "/05-first.toml", run + "/10-a.toml", etc + "/20-b.toml"])
    #expect(config.watches[2].format == .safetensors)
    let masked = Set(config.masked.map(\.file))
    #expect(
      masked == [
        run + "/20-b.toml", lib + "/20-b.toml", lib + "/10-a.toml", etc + "/30-c.toml", lib + "/30-c.toml",
        run + "/40-d.toml", lib + "/40-d.toml", etc + "/60-f.toml", lib + "/60-f.toml",
      ])
    #expect(config.masked.contains(MaskedDropin(file: lib + "/20-b.toml", maskedBy: etc + "/20-b.toml")))
    #expect(config.masked.contains(MaskedDropin(file: etc + "/30-c.toml", maskedBy: etc + "/30-c.toml")))
  }

  @Test func brokenDropinIsReportedAndOthersLoad() throws {
    let dir = CoreTempDir()
    try dir.write("watch.d/10-good.toml", Self.validDropin)
    try dir.write("watch.d/20-bad.toml", "path = \"/data/runs/b\"\nformat = \"onnx\"")
    try dir.write("watch.d/30-syntax.toml", "path = [")
    try dir.write("watch.d/40-dup.toml", "path = \"/data/runs/a/\"\nformat = \"safetensors\"")
    try dir.write("watch.d/50-good.toml", "path = \"/data/runs/c\"\nformat = \"safetensors\"")
    try dir.write("ckptd.toml", "dropin_dirs = [\"watch.d\"]")
    let config = try ConfigLoader.load(path: dir.sub("ckptd.toml"))
    #expect(config.watches.map(\.path) == ["/data/runs/a", "/data/runs/c"])
    #expect(config.problems.map(\.file) == ["20-bad", "30-syntax", "40-dup"].map { dir.sub("watch.d/\($0).toml") })
    #expect(config.problems[0].message.contains("format must be"))
    #expect(config.problems[1].message.contains("not valid TOML"))
    #expect(config.problems[2].message.contains("already watched by \(dir.sub("watch.d/10-good.toml"))"))
  }

  @Test func relativeDirsResolveAgainstTheConfigFolder() throws {
    let dir = CoreTempDir()
    try dir.write("conf/watch.d/10-a.toml", Self.validDropin)
    try dir.write("conf/ckptd.toml", "status_file = \"state/status.json\"\ndropin_dirs = [\"watch.d\", \"../other\"]")
    // Load from another working directory: the result must not depend on it.
    let config = try ConfigLoader.load(path: dir.sub("conf/ckptd.toml"))
    #expect(config.dropinDirs == [dir.sub("conf/watch.d"), dir.sub("other")])
    #expect(config.statusFile == dir.sub("conf/state/status.json"))
    #expect(config.watches.map(\.path) == ["/data/runs/a"])
  }

  @Test func repositoryConfigAndExampleAreValid() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().path
    let config = try ConfigLoader.load(path: root + "/config/ckptd.toml")
    #expect(config.problems == [])
    #expect(config.workers == 1)
    #expect(config.dropinDirs.first == root + "/config/watch.d")
    #expect(config.watches.first?.path == "/tmp/ckptd-demo/run")
    #expect(config.watches.first?.sourceFile == root + "/config/watch.d/10-example.toml")
  }

  @Test func reportShowsEffectiveSettingsMasksAndProblems() throws {
    let dir = CoreTempDir()
    try dir.write("a/10-x.toml", Self.validDropin)
    try dir.write("b/10-x.toml", "path = \"/other\"\nformat = \"bin\"")
    try dir.write("a/20-bad.toml", "format = \"bin\"")
    try dir.write("ckptd.toml", "dropin_dirs = [\"a\", \"b\"]")
    let report = ConfigReport.render(try ConfigLoader.load(path: dir.sub("ckptd.toml")))
    #expect(report.contains("/data/runs/a  (from \(dir.sub("a/10-x.toml")))"))
    #expect(report.contains("format = bin"))
    #expect(report.contains("manifest = /data/runs/a/.ckptd-manifest.jsonl"))
    #expect(report.contains("\(dir.sub("b/10-x.toml"))  (overridden by \(dir.sub("a/10-x.toml")))"))
    #expect(report.contains("\(dir.sub("a/20-bad.toml")): path is required"))
  }
}

// MARK: - fixtures shared by the daemon-core suites

/// A fresh temporary folder per test, removed when the value goes away.
final class CoreTempDir {
  let path: String

  init(_ label: String = "ckptd-daemon-test") {
    let base = FileManager.default.temporaryDirectory.path
    path = base + "/\(label)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }

  deinit {
    try? FileManager.default.removeItem(atPath: path)
  }

  /// `path/relative`, with its parent folders created.
  @discardableResult
  func write(_ relative: String, _ text: String) throws -> String {
    let file = path + "/" + relative
    let folder = (file as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try text.write(toFile: file, atomically: false, encoding: .utf8)
    return file
  }

  func sub(_ relative: String) -> String { path + "/" + relative }
}

@Suite struct EcosystemConfigTests {
  @Test func execAfterAndTimeoutAreReadAndReported() throws {
    let dir = CoreTempDir()
    let main = try dir.write("ckptd.toml", "dropin_dirs = [\"watch.d\"]\n")
    try dir.write(
      "watch.d/10-a.toml",
      """
      path = "/data/runs/a"
      format = "bin"
      exec_after = ["/bin/true", "--repo", "org/model"]
      exec_timeout_seconds = 12.5
      """)
    let config = try ConfigLoader.load(path: main)
    #expect(config.problems.isEmpty)
    #expect(config.watches.first?.execAfter == ["/bin/true", "--repo", "org/model"])
    #expect(config.watches.first?.execTimeoutSeconds == 12.5)
    let report = ConfigReport.render(config)
    #expect(report.contains("exec_after = \"/bin/true\" \"--repo\" \"org/model\""))
    #expect(report.contains("exec_timeout_seconds = 12.5"))
    #expect(try ConfigLoader.parseDropin(text: "path = \"/x\"\nformat = \"bin\"", file: "f").execTimeoutSeconds == 3600)
  }

  @Test(arguments: [
    ("exec_after = \"/bin/true\"", "exec_after must be an array of strings"),
    ("exec_after = [\"/bin/true\", 3]", "exec_after must be an array of strings"),
    ("exec_after = [\"true\"]", "exec_after[0] must be an absolute path"),
    ("exec_after = [\"/nonexistent/push\"]", "exec_after[0] /nonexistent/push does not exist"),
    ("exec_after = [\"@PLAIN@\"]", "exec_after[0] @PLAIN@ is not an executable file"),
    ("exec_after = [\"/bin\"]", "exec_after[0] /bin is not an executable file"),
    ("exec_timeout_seconds = 0", "exec_timeout_seconds must be more than 0"),
    ("exec_timeout_seconds = \"1h\"", "exec_timeout_seconds must be a number"),
  ])
  func badExecKeysNameTheDropinAndKey(line: String, expected: String) throws {
    let dir = CoreTempDir()
    let main = try dir.write("ckptd.toml", "dropin_dirs = [\"watch.d\"]\n")
    // A plain file without execute bits (not /etc/hostname: some images ship it with them).
    let plain = try dir.write("plain.txt", "not a program")
    chmod(plain, 0o644)
    let line = line.replacingOccurrences(of: "@PLAIN@", with: plain)
    let expected = expected.replacingOccurrences(of: "@PLAIN@", with: plain)
    try dir.write("watch.d/10-bad.toml", "path = \"/data/runs/a\"\nformat = \"bin\"\n\(line)\n")
    try dir.write("watch.d/20-good.toml", "path = \"/data/runs/b\"\nformat = \"bin\"\n")
    let config = try ConfigLoader.load(path: main)
    #expect(config.watches.map(\.path) == ["/data/runs/b"])
    #expect(config.problems.count == 1)
    #expect(config.problems.first?.file == dir.sub("watch.d/10-bad.toml"))
    #expect(config.problems.first?.message.contains(expected) == true, "\(config.problems)")
  }

  @Test func metricsFileIsResolvedAndAMissingFolderTurnsMetricsOff() throws {
    let dir = CoreTempDir()
    let good = try dir.write("a/ckptd.toml", "metrics_file = \"ckptd.prom\"\ndropin_dirs = []\n")
    #expect(try ConfigLoader.load(path: good).metricsFile == dir.sub("a/ckptd.prom"))
    #expect(ConfigReport.render(try ConfigLoader.load(path: good)).contains("metrics_file: \(dir.sub("a/ckptd.prom"))"))

    let bad = try dir.write(
      "b/ckptd.toml", "metrics_file = \"/nonexistent/textfile/ckptd.prom\"\ndropin_dirs = [\"watch.d\"]\n")
    try dir.write("b/watch.d/10-a.toml", "path = \"/data/runs/a\"\nformat = \"bin\"\n")
    let config = try ConfigLoader.load(path: bad)
    #expect(config.metricsFile == "")
    #expect(config.watches.count == 1)
    #expect(config.problems.first?.file == bad)
    #expect(config.problems.first?.message.contains("metrics_file") == true)
    #expect(config.problems.first?.message.contains("/nonexistent/textfile does not exist") == true)
  }
}
