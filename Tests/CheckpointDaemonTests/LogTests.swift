import CheckpointFormats
import Foundation
import Logging
import Synchronization
import Testing

@testable import CheckpointDaemon

#if canImport(Glibc)
  import Glibc
#endif

/// Collects what a handler writes.
final class LineSink: Sendable {
  private let stored = Mutexed<[String]>([])
  var lines: [String] { stored.withLock { $0 } }
  func append(_ line: String) { stored.withLock { $0.append(line) } }
}

@Suite struct LogTests {
  @Test(arguments: [
    (Logger.Level.debug, "<7>"), (.info, "<6>"), (.notice, "<5>"), (.warning, "<4>"), (.error, "<3>"),
    (.critical, "<2>"),
  ])
  func journalLinesCarryPriority(level: Logger.Level, prefix: String) {
    let sink = LineSink()
    var logger = Logger(label: "ckptd") { DaemonLogHandler(label: $0, level: .trace, journal: true, sink: sink.append) }
    logger.logLevel = .trace
    logger.log(level: level, "converted checkpoint-5", metadata: ["dir": "/data/runs/a"])
    #expect(sink.lines == ["\(prefix)converted checkpoint-5 dir=/data/runs/a\n"])
  }

  @Test func plainLinesHaveLevelMessageAndQuotedMetadata() {
    let sink = LineSink()
    var logger = Logger(label: "ckptd") { DaemonLogHandler(label: $0, level: .info, journal: false, sink: sink.append) }
    logger[metadataKey: "worker"] = "1"
    logger.debug("hidden")
    logger.warning("slow\ndisk", metadata: ["path": "/a b/c", "reason": "say \"hi\"", "n": "3"])
    #expect(sink.lines == ["WARNING slow disk n=3 path=\"/a b/c\" reason=\"say \\\"hi\\\"\" worker=1\n"])
  }

  @Test func journalDetectionComparesStderrDeviceAndInode() throws {
    let dir = CoreTempDir()
    let file = try dir.write("stream", "")
    let fd = open(file, O_RDONLY)
    defer { close(fd) }
    var info = stat()
    #expect(fstat(fd, &info) == 0)
    let matching = ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino)"]
    #expect(DaemonLogging.stderrIsJournal(environment: matching, descriptor: fd))
    #expect(
      !DaemonLogging.stderrIsJournal(
        environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino + 1)"], descriptor: fd))
    #expect(!DaemonLogging.stderrIsJournal(environment: [:], descriptor: fd))
    #expect(!DaemonLogging.stderrIsJournal(environment: ["JOURNAL_STREAM": "garbage"], descriptor: fd))
  }

  @Test func levelNames() {
    #expect(DaemonLogging.level(named: "INFO") == .info)
    #expect(DaemonLogging.level(named: "warn") == .warning)
    #expect(DaemonLogging.level(named: "critical") == .critical)
    #expect(DaemonLogging.level(named: "loud") == nil)
  }
}
