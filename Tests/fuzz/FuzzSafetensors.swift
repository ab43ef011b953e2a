// libFuzzer harness: the safetensors reader (header length, JSON header parser, layout rules, streaming).

func fuzzSafetensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  let path = fuzzInputFile(data, size, suffix: ".safetensors")
  if let dict = try? SafetensorsReader.read(path: path) { drain(dict) }
  if size > 8, let data {
    _ = try? JSONValue.parse(Array(UnsafeBufferPointer(start: data + 8, count: size - 8)))
  }
  return 0
}
