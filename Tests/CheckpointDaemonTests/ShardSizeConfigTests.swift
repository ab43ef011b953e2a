import CheckpointFormats
import Testing

@testable import CheckpointDaemon

@Suite struct ShardSizeConfigTests {
  static let base = "path = \"/a\"\nformat = \"safetensors\"\n"

  @Test(
    arguments: [
      ("", nil, ""), ("max_shard_size = \"\"", nil, ""), ("max_shard_size = \"5GB\"", Int64(5_000_000_000), "5GB"),
      ("max_shard_size = \"4GiB\"", Int64(4 << 30), "4GiB"), ("max_shard_size = 1000", Int64(1000), "1000"),
    ] as [(String, Int64?, String)])
  func dropinKeyParsesWithTransformersMeaning(line: String, bytes: Int64?, text: String) throws {
    let watch = try ConfigLoader.parseDropin(text: Self.base + line, file: "/w/x.toml")
    #expect(watch.maxShardBytes == bytes)
    #expect(watch.maxShardSize == text)
  }

  @Test(arguments: [
    ("max_shard_size = \"5XB\"", "max_shard_size: '5XB' is not a size"),
    ("max_shard_size = \"0GB\"", "max_shard_size: '0GB' is not a size"),
    ("max_shard_size = 1.5", "max_shard_size must be a size"),
  ])
  func anUnparsableSizeIsOneLineNamingTheDropinAndKey(line: String, expected: String) {
    let error = #expect(throws: CheckpointError.self) {
      try ConfigLoader.parseDropin(text: Self.base + line, file: "/w/x.toml")
    }
    #expect(error?.path == "/w/x.toml")
    #expect(error?.description.contains("\n") == false)
    #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
  }

  @Test func theReportShowsTheLimit() throws {
    var config = try ConfigLoader.parseMain(text: "", path: "/x.toml")
    config.watches = [try ConfigLoader.parseDropin(text: Self.base + "max_shard_size = \"2MB\"", file: "/w/x.toml")]
    #expect(ConfigReport.render(config).contains("max_shard_size = 2MB (2000000 bytes)"))
  }
}
