import Testing

@testable import CheckpointConversion

@Suite struct CheckpointConversionSmokeTests {
  @Test func moduleLoads() {
    #expect(Bool(true))
  }
}
