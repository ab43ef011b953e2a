import Testing

@testable import CheckpointFormats

@Suite struct DTypeTableTests {
  @Test(arguments: DType.allCases) func namesRoundTrip(dtype: DType) {
    #expect(DType(safetensorsName: dtype.safetensorsName) == dtype)
    #expect(DType(torchName: dtype.torchName) == dtype)
    if let storage = dtype.legacyStorageClass {
      #expect(DType(legacyStorageClass: storage) == dtype)
    }
  }

  @Test func stridesOfContiguousShape() {
    #expect(TensorInfo.contiguousStrides([2, 3, 4]) == [12, 4, 1])
    #expect(TensorInfo.contiguousStrides([]) == [])
  }
}
