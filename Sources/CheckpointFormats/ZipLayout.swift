/// Byte-layout arithmetic of the zip archives `torch.save` writes (PyTorch's
/// `caffe2/serialize/inline_container.cc` `detail::getOffset/getPadding` driving miniz).
///
/// Pure functions, so that the zip64 branches can be tested without writing 4 GiB.
public enum ZipLayout {
  /// Data offsets of every record are multiples of this (`.storage_alignment`).
  public static let alignment: Int64 = 64
  /// Sizes and offsets at or above this need the zip64 extra field.
  public static let zip64Threshold: Int64 = 0xFFFF_FFFF
  /// Size of a local file header without name and extras.
  public static let localHeaderSize: Int64 = 30
  /// Size of a central directory header without name and extras.
  public static let centralHeaderSize: Int64 = 46

  /// Where one record's pieces go, for a local header starting at `cursor`.
  public struct Record: Sendable, Hashable {
    /// Archive offset of the local header.
    public var headerOffset: Int64
    /// Length of the record name in bytes.
    public var nameLength: Int
    /// Data size in bytes.
    public var size: Int64
    /// Bytes of the zip64 extra field in the local header (0, 12, 20 or 28).
    public var localZip64ExtraLength: Int
    /// Bytes of 'Z' filler in the FB extra field.
    public var paddingLength: Int
    /// Archive offset of the first data byte (a multiple of 64).
    public var dataOffset: Int64
    /// Bytes of the data descriptor after the data (0 when size is 0, else 16 or 24).
    public var descriptorLength: Int
    /// Archive offset where the next local header starts.
    public var endOffset: Int64

    /// Whether the sizes need 64 bits.
    public var sizeNeedsZip64: Bool { size >= ZipLayout.zip64Threshold }
    /// Whether the header offset needs 64 bits.
    public var offsetNeedsZip64: Bool { headerOffset >= ZipLayout.zip64Threshold }
    /// The total extra length written in the local header (zip64 extra plus FB extra).
    public var localExtraLength: Int { localZip64ExtraLength + 4 + paddingLength }
  }

  /// Lays out one record exactly as PyTorch's `getPadding` plus miniz do.
  public static func record(at cursor: Int64, nameLength: Int, size: Int64) -> Record {
    var start = cursor + localHeaderSize + Int64(nameLength) + 4
    var zip64Length = 0
    if size >= zip64Threshold || cursor >= zip64Threshold {
      zip64Length = 4
      if size >= zip64Threshold { zip64Length += 16 }
      if cursor >= zip64Threshold { zip64Length += 8 }
      start += Int64(zip64Length)
    }
    let next = (start + alignment - 1) / alignment * alignment
    let padding = Int(next - start)
    let descriptor = size == 0 ? 0 : (zip64Length > 0 ? 24 : 16)
    return Record(
      headerOffset: cursor, nameLength: nameLength, size: size, localZip64ExtraLength: zip64Length,
      paddingLength: padding, dataOffset: next, descriptorLength: descriptor,
      endOffset: next + size + Int64(descriptor))
  }
}
