import Foundation
import Testing

@testable import CheckpointFormats

/// `size` bytes where byte i is `i & 0xFF`, produced without per-byte work per chunk.
private struct PatternSource: TensorSource {
  let byteCount: Int64
  func stream(scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
    let chunk = scratch.count / 256 * 256
    for index in 0..<chunk { scratch[index] = UInt8(index & 0xFF) }
    var done: Int64 = 0
    while done < byteCount {
      let n = Int(min(Int64(chunk), byteCount - done))
      try body(UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
      done += Int64(n)
    }
  }
}

private let largeScript = #"""
  import os, sys, zipfile, torch, torch.utils.serialization
  os.environ["TORCH_SERIALIZATION_DEBUG"] = "1"
  path = sys.argv[1]
  for calc in [False, True]:
      torch.utils.serialization.config.load.calculate_storage_offsets = calc
      d = torch.load(path, weights_only=True, mmap=True)
      big = d["big"]
      assert big.numel() == 0xFFFFFFFF + 100, big.numel()
      assert big[-1].item() == (0xFFFFFFFF + 99) & 0xFF and big[1000].item() == 1000 & 0xFF
      assert d["before"].tolist() == list(range(16)), d["before"]
      assert d["after"].tolist() == list(range(16)), d["after"]
  z = zipfile.ZipFile(path)
  for info in z.infolist():
      if info.file_size < 1 << 20:
          z.read(info.filename)  # checks the CRC
  print("OK")
  """#

/// A file past 4 GiB: zip64 extras for a record's size and for header offsets, loaded by real torch.
/// Opt in with `CKPTD_LARGE_TESTS=1` (writes about 4.3 GB).
@Suite(
  .enabled(if: ProcessInfo.processInfo.environment["CKPTD_LARGE_TESTS"] == "1"),
  .enabled(if: FileManager.default.isExecutableFile(atPath: venvPython)))
struct TorchWriterLargeTests {
  @Test func zip64FileLoadsInTorch() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/large.bin"
    let bigSize = Int64(0xFFFF_FFFF) + 100
    let storages = [
      OutputStorage(key: "a", dtype: .u8, source: PatternSource(byteCount: 16)),
      OutputStorage(key: "b", dtype: .u8, source: PatternSource(byteCount: bigSize)),
      OutputStorage(key: "c", dtype: .u8, source: PatternSource(byteCount: 16)),
    ]
    let tensors = [
      TensorInfo(name: "before", dtype: .u8, shape: [16], storageKey: "a"),
      TensorInfo(name: "big", dtype: .u8, shape: [Int(bigSize)], storageKey: "b"),
      TensorInfo(name: "after", dtype: .u8, shape: [16], storageKey: "c"),
    ]
    let output = try OutputFile(path: path)
    try StreamBuffer.with { (scratch) in
      try TorchWriter.write(storages: storages, tensors: tensors, archiveName: "large", to: output, scratch: scratch)
    }
    try output.commit()
    let (result, status) = try runPython(largeScript, arguments: [path])
    #expect(status == 0 && result == "OK", "\(result)")
  }
}
