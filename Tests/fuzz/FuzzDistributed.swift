// libFuzzer harnesses for the distributed-checkpoint readers (issue 12).
//
// zero: the input is a whole torch.save zip (seeds: real DeepSpeed *_model_states.pt and *_optim_states.pt),
// read with the distributed allowlist as a ZeRO optimizer file and as a model states file.
// dcp: the input is [u32 LE a][u32 LE b][a bytes of .metadata][b bytes of __0_0.distcp][rest: __1_0.distcp]
// (seeds: real FSDP DCP folders), laid out as a folder and read as a Distributed Checkpoint, every tensor drained.
import Glibc

func fuzzZero(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  let path = fuzzInputFile(data, size, suffix: "-zero.pt")
  _ = try? ZeroCheckpoint.readOptim(path)
  _ = try? ZeroCheckpoint.readModel(path)
  return 0
}

func fuzzDCP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
  guard bytes.count >= 8 else { return 0 }
  func u32(_ at: Int) -> Int {
    Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
  }
  let a = min(u32(0), bytes.count - 8)
  let b = min(u32(4), bytes.count - 8 - a)
  let folder = "/dev/shm/ckptd-fuzz-\(getpid())-dcp"
  mkdir(folder, 0o700)
  let parts = [
    (".metadata", bytes[8..<(8 + a)]), ("__0_0.distcp", bytes[(8 + a)..<(8 + a + b)]),
    ("__1_0.distcp", bytes[(8 + a + b)...]),
  ]
  for (name, part) in parts {
    let fd = open(folder + "/" + name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return 0 }
    _ = Array(part).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
  }
  if let model = try? DCPCheckpoint.read(folder: folder) {
    StreamBuffer.with(size: 4096) { scratch in
      for tensor in model.tensors {
        try? tensor.source.stream(scratch: scratch) { _ in }
      }
    }
  }
  return 0
}
