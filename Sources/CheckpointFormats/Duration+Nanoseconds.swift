extension Duration {
  /// The whole nanoseconds of this duration (attoseconds below a nanosecond dropped).
  package var nanosecondCount: Int64 {
    components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
  }
}
