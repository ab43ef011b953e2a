import Testing

@testable import CheckpointDaemon

@Suite struct CheckpointDaemonSmokeTests {
  @Test func moduleLoads() {
    #expect(Bool(true))
  }
}
