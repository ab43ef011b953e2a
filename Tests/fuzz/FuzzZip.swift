// libFuzzer harness: the zip directory reader and the whole torch zip path (records, data.pkl, storages).

func fuzzZip(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  let path = fuzzInputFile(data, size, suffix: ".bin")
  if let file = try? ReadableFile(path: path), let zip = try? ZipReader(file: file) {
    _ = try? StreamBuffer.with(size: 4096) { scratch in try zip.verifyAllCRCs(scratch: scratch) }
  }
  if let dict = try? TorchReader.read(path: path) { drain(dict) }
  return 0
}
