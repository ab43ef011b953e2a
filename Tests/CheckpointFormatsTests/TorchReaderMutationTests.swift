import Foundation
import Testing

@testable import CheckpointFormats

/// A seeded, in-process stand-in for fuzzing: corrupt valid files at random and require that every
/// outcome is either a readable state dict or a `CheckpointError`, never a crash or another error.
@Suite struct TorchReaderMutationTests {
  /// A tiny deterministic generator (SplitMix64), so failures reproduce.
  struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
  }

  static let tensors = [
    FixtureTensor("a", key: "0", storageNumel: 12, shape: [3, 4]),
    FixtureTensor("a_t", key: "0", storageNumel: 12, shape: [4, 3], strides: [1, 4]),
    FixtureTensor("u", dtype: .u16, key: "1", storageNumel: 3, shape: [3]),
    FixtureTensor("p", dtype: .bf16, key: "2", storageNumel: 2, shape: [2], requiresGrad: true, isParameter: true),
  ]

  static func validZip() -> [UInt8] {
    let records = [
      ("0", float32Bytes((0..<12).map(Float.init))), ("1", [1, 0, 2, 0, 3, 0]), ("2", [0x80, 0x3F, 0x80, 0x3F]),
    ]
    return torchZip(pickle: PickleEmitter.stateDict(tensors, container: .orderedDict), records: records).bytes
  }

  static func validLegacy() -> [UInt8] {
    legacyFile(
      tensors,
      storages: [
        ("0", 12, float32Bytes((0..<12).map(Float.init))), ("1", 6, [1, 0, 2, 0, 3, 0]),
        ("2", 2, [0x80, 0x3F, 0x80, 0x3F]),
      ])
  }

  /// Reads and streams every tensor; returns true if the file was accepted.
  func survive(_ bytes: [UInt8], folder: FixtureFolder) throws -> Bool {
    let path = try folder.write("m.bin", bytes)
    do {
      let state = try TorchReader.read(path: path)
      try StreamBuffer.with(size: 64) { scratch in
        for tensor in state.tensors {
          try state.source(for: tensor).stream(scratch: scratch) { _ in }
        }
      }
      return true
    } catch is CheckpointError {
      return false
    }
  }

  @Test(arguments: ["zip", "legacy"]) func corruptedFilesFailCleanly(kind: String) throws {
    let folder = try FixtureFolder()
    let valid = kind == "zip" ? Self.validZip() : Self.validLegacy()
    #expect(try survive(valid, folder: folder))
    var random = SplitMix(state: kind == "zip" ? 1 : 2)
    var accepted = 0
    for round in 0..<1500 {
      var bytes = valid
      if round % 10 == 9 {
        bytes.removeLast(Int.random(in: 1..<bytes.count, using: &random))
      } else {
        for _ in 0..<Int.random(in: 1...4, using: &random) {
          let at = Int.random(in: 0..<bytes.count, using: &random)
          bytes[at] = round % 3 == 0 ? UInt8.random(in: 0...255, using: &random) : bytes[at] ^ 0xFF
        }
      }
      if try survive(bytes, folder: folder) { accepted += 1 }
    }
    // Some flips land in tensor data or ignored fields; most must be refused.
    #expect(accepted < 1500)
  }
}
