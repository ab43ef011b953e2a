// libFuzzer harness: the restricted pickle machine. The input is a data.pkl, wrapped in a valid torch zip
// with four storage records, so every input reaches the machine; inputs starting with 0x80 0x02 0x8A are
// also tried as a legacy (pre-1.6) file, which runs the machine on the raw file.
import Glibc

func fuzzPickle(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  let pickle = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
  let path = "/dev/shm/ckptd-fuzz-\(getpid())-pickle.bin"
  unlink(path)
  if let output = try? OutputFile(path: path) {
    let written: Void? = try? StreamBuffer.with(size: 4096) { scratch in
      let zip = try ZipWriter(output: output, archiveName: "archive")
      try zip.addRecord("data.pkl", bytes: pickle)
      for key in 0..<4 {
        try zip.addRecord("data/\(key)", bytes: [UInt8](repeating: UInt8(key), count: 256))
      }
      try zip.addRecord("version", bytes: Array("3\n".utf8))
      try zip.finish()
      try output.commit(replace: true)
    }
    if written != nil, let dict = try? TorchReader.read(path: path) { drain(dict) }
  }
  if pickle.starts(with: [0x80, 0x02, 0x8A]) {
    let legacy = fuzzInputFile(data, size, suffix: "-legacy.bin")
    if let dict = try? TorchReader.read(path: legacy) { drain(dict) }
  }
  return 0
}
