import Foundation
import Testing

@testable import CheckpointFormats

/// The project's Python environment with real torch; these tests are skipped when it is absent.
let venvPython = "/root/.cache/ckptd/venv/bin/python"

/// Runs `script` with the venv's Python and returns its standard output (trimmed) and exit status.
func runPython(_ script: String, arguments: [String]) throws -> (String, Int32) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: venvPython)
  process.arguments = ["-c", script] + arguments
  let pipe = Pipe()
  process.standardOutput = pipe
  process.standardError = pipe
  try process.run()
  let data = pipe.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (
    String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), process.terminationStatus
  )
}

/// Builds the same state dict with real torch, `torch.save`s it, loads ckptd's file with
/// `torch.load(weights_only=True, mmap=True)` and compares everything, including the archive bytes.
private let compareScript = #"""
  import json, sys, zipfile, torch
  spec = json.load(open(sys.argv[1])); ours = sys.argv[2]; ref = sys.argv[3]
  def pattern(dt, numel, index):
      size = torch.empty(0, dtype=dt).element_size()
      return bytes((j % 2) if dt == torch.bool else ((j * 7 + index * 13 + 1) & 0xFF) for j in range(numel * size))
  bases = {}
  for index, s in enumerate(spec["storages"]):
      dt = getattr(torch, s["dtype"])
      raw = pattern(dt, s["numel"], index)
      u8 = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
      bases[s["key"]] = u8.view(dt)
  d = {}
  for t in spec["tensors"]:
      x = bases[t["storage"]].as_strided(t["shape"], t["strides"], t["offset"])
      if t["param"]:
          x = torch.nn.Parameter(x, requires_grad=t["grad"])
      elif t["grad"]:
          x.requires_grad_(True)
      d[t["name"]] = x
  torch.save(d, ref)
  a = torch.load(ours, weights_only=True, mmap=True)
  b = torch.load(ref, weights_only=True)
  problems = []
  if list(a) != list(b): problems.append(f"names {list(a)} != {list(b)}")
  for name in b:
      x, y = a[name], b[name]
      for attr in ["dtype", "shape"]:
          if getattr(x, attr) != getattr(y, attr): problems.append(f"{name}: {attr} {getattr(x, attr)} != {getattr(y, attr)}")
      if x.stride() != y.stride() or x.storage_offset() != y.storage_offset(): problems.append(f"{name}: view differs")
      if type(x) is not type(y) or x.requires_grad != y.requires_grad: problems.append(f"{name}: type/grad differs")
      if bytes(x.untyped_storage()) != bytes(y.untyped_storage()): problems.append(f"{name}: storage bytes differ")
  ptr = lambda m: {n: m[n].untyped_storage().data_ptr() for n in m if m[n].untyped_storage().nbytes()}
  pa, pb = ptr(a), ptr(b)
  for n in pb:
      for m in pb:
          if (pa[n] == pa[m]) != (pb[n] == pb[m]): problems.append(f"sharing of {n} and {m} differs")
  if zipfile.ZipFile(ours).testzip() is not None: problems.append("zip CRC check failed")
  za, zb = zipfile.ZipFile(ours).infolist(), zipfile.ZipFile(ref).infolist()
  if [i.filename for i in za] != [i.filename for i in zb]: problems.append("record names differ")
  for i, j in zip(za[:-1], zb[:-1]):
      if (i.header_offset, i.file_size, i.CRC, i.flag_bits) != (j.header_offset, j.file_size, j.CRC, j.flag_bits):
          problems.append(f"{i.filename}: zip entry differs")
  last = za[-1].header_offset
  if open(ours, "rb").read()[:last] != open(ref, "rb").read()[:last]: problems.append("archive bytes differ")
  import os, torch.utils.serialization
  os.environ["TORCH_SERIALIZATION_DEBUG"] = "1"  # asserts computed offsets == header offsets
  torch.utils.serialization.config.load.calculate_storage_offsets = True
  c = torch.load(ours, weights_only=True, mmap=True)
  for name in b:
      if bytes(c[name].untyped_storage()) != bytes(b[name].untyped_storage()): problems.append(f"{name}: computed offsets")
  print("\n".join(problems) or "OK")
  """#

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: venvPython)))
struct TorchWriterInteropTests {
  @Test func realTorchLoadsOurFileAndWritesTheSameBytes() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try FileManager.default.createDirectory(atPath: dir + "/ref", withIntermediateDirectories: true)
    let fixture = TorchFixture.mixed
    try fixture.write(to: dir + "/model.bin")
    let spec: [String: Any] = [
      "storages": fixture.storages.map { ["key": $0.key, "dtype": $0.dtype.torchName, "numel": $0.numel] },
      "tensors": fixture.tensors.map {
        [
          "name": $0.name, "storage": $0.storageKey, "shape": $0.shape, "strides": $0.strides,
          "offset": $0.storageOffset, "param": $0.isParameter, "grad": $0.requiresGrad,
        ] as [String: Any]
      },
    ]
    try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: dir + "/spec.json"))
    let (output, status) = try runPython(
      compareScript, arguments: [dir + "/spec.json", dir + "/model.bin", dir + "/ref/model.bin"])
    #expect(status == 0)
    #expect(output == "OK")
  }
}
