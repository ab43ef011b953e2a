#if canImport(Crypto)
  import Crypto
#endif

/// SHA-256 over data that passes in chunks (swift-crypto, BoringSSL underneath).
///
/// The fuzzing build compiles this module's sources without swift-crypto; there `isAvailable` is false
/// and hashing is skipped. Every real build has it.
public struct StreamingSHA256 {
  #if canImport(Crypto)
    private var state = SHA256()
    public static let isAvailable = true
  #else
    public static let isAvailable = false
  #endif

  public init() {}

  public mutating func update(_ bytes: UnsafeRawBufferPointer) {
    #if canImport(Crypto)
      state.update(bufferPointer: bytes)
    #endif
  }

  /// The lowercase hex digest of everything passed to `update` (empty without swift-crypto).
  public func hexDigest() -> String {
    #if canImport(Crypto)
      return state.finalize().map { byte in
        let hex = String(byte, radix: 16)
        return byte < 16 ? "0" + hex : hex
      }.joined()
    #else
      return ""
    #endif
  }
}
