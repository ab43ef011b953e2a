// Shared by the three libFuzzer harnesses: compiled into the CheckpointFormats module by scripts/fuzz.sh.
import Glibc

/// Writes the fuzzer's input to a per-process file on tmpfs and returns its path: the readers take paths.
func fuzzInputFile(_ data: UnsafePointer<UInt8>?, _ size: Int, suffix: String) -> String {
  let path = "/dev/shm/ckptd-fuzz-\(getpid())\(suffix)"
  let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
  guard fd >= 0 else { return path }
  var done = 0
  while done < size, let base = data {
    let n = write(fd, base + done, size - done)
    if n <= 0 { break }
    done += n
  }
  close(fd)
  return path
}

/// Streams every tensor of a state dict the reader accepted, so views and offsets are exercised too.
func drain(_ dict: StateDict) {
  StreamBuffer.with(size: 4096) { scratch in
    for tensor in dict.tensors {
      guard let source = try? dict.source(for: tensor) else { continue }
      var seen: Int64 = 0
      try? source.stream(scratch: scratch) { chunk in seen += Int64(chunk.count) }
    }
  }
}
