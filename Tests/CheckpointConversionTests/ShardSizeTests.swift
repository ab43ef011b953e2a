import CheckpointConversion
import Testing

@Suite struct ShardSizeTests {
  @Test(arguments: [
    ("5GB", Int64(5_000_000_000)), ("5gb", 5_000_000_000), ("4GiB", 4 << 30), ("4gib", 4 << 30),
    ("500MB", 500_000_000), ("1.5GB", 1_500_000_000), ("10KB", 10_000), ("2MiB", 2 << 20), ("3KiB", 3072),
    ("1TB", 1_000_000_000_000), ("1000", 1000), (" 5 GB ", 5_000_000_000), ("0.1KB", 100),
  ])
  func parsesTransformersSizes(text: String, bytes: Int64) throws {
    #expect(try ShardSize.parse(text) == bytes)
  }

  @Test func emptyKeepsTheSourceSharding() throws {
    #expect(try ShardSize.parse("") == nil)
  }

  @Test(arguments: ["5XB", "GB", "1.5GiB", "-5GB", "0", "0GB", "five GB", "5 G", "1e30GB", "nanGB"])
  func refusesWhatIsNotASize(text: String) {
    #expect(throws: ShardSize.ParseError.self) { try ShardSize.parse(text) }
  }
}
