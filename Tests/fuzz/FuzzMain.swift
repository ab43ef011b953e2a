// The libFuzzer entry point: one binary, three harnesses, chosen by CKPTD_FUZZ_TARGET
// (safetensors, zip or pickle) so that the sanitizer build of the module is compiled once.
import Glibc

private let fuzzTarget: String = {
  guard let value = getenv("CKPTD_FUZZ_TARGET") else { return "safetensors" }
  return String(cString: value)
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  switch fuzzTarget {
  case "zip": return fuzzZip(data, size)
  case "pickle": return fuzzPickle(data, size)
  default: return fuzzSafetensors(data, size)
  }
}
