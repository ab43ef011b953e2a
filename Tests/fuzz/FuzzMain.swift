// The libFuzzer entry point: one binary, five harnesses, chosen by CKPTD_FUZZ_TARGET
// (safetensors, zip, pickle, zero or dcp) so that the sanitizer build of the module is compiled once.
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
  case "zero": return fuzzZero(data, size)
  case "dcp": return fuzzDCP(data, size)
  default: return fuzzSafetensors(data, size)
  }
}
