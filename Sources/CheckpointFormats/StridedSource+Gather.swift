/// Gathering a non-contiguous view into C order without one `pread` per element.
extension StridedSource {
  /// The view without its size-1 dimensions, the innermost dimensions that are contiguous collapsed into
  /// runs of `run` elements.
  struct RunLayout {
    var shape: [Int]
    var strides: [Int]
    var run: Int

    init(shape fullShape: [Int], strides fullStrides: [Int]) {
      var shape: [Int] = []
      var strides: [Int] = []
      for (size, stride) in zip(fullShape, fullStrides) where size != 1 {
        shape.append(size)
        strides.append(stride)
      }
      var run = 1
      while let size = shape.last, strides.last == run {
        run *= size
        shape.removeLast()
        strides.removeLast()
      }
      self.shape = shape
      self.strides = strides
      self.run = run
    }

    /// Elements from the view's first element to one past its last (validated against the storage).
    var spanElements: Int {
      var span = run
      for (size, stride) in zip(shape, strides) { span += (size - 1) * stride }
      return span
    }

    /// Calls `visit` with the element offset of every run, in C order.
    func forEachRun(_ visit: (Int) throws -> Void) rethrows {
      var index = [Int](repeating: 0, count: shape.count)
      while true {
        var offset = 0
        for dim in 0..<shape.count { offset += index[dim] * strides[dim] }
        try visit(offset)
        var dim = shape.count - 1
        while dim >= 0 {
          index[dim] += 1
          if index[dim] < shape[dim] { break }
          index[dim] = 0
          dim -= 1
        }
        if dim < 0 { return }
      }
    }
  }

  /// Streams the view's elements in C order (the view is not contiguous and not empty).
  func gather(
    base: Int64, itemSize: Int, scratch: UnsafeMutableRawBufferPointer,
    _ body: (UnsafeRawBufferPointer) throws -> Void
  ) throws {
    guard scratch.count >= itemSize else {
      throw CheckpointError(.invalidFormat, path: file.path, "scratch buffer smaller than one element")
    }
    let layout = RunLayout(shape: tensor.shape, strides: tensor.strides)
    let spanBytes = layout.spanElements * itemSize
    // The faster paths split the scratch: file bytes in the back half, packed output in the front half.
    let half = scratch.count / 2
    let front = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<half])
    let back = UnsafeMutableRawBufferPointer(rebasing: scratch[half..<(2 * half)])
    if half >= itemSize && spanBytes <= half {
      // Small footprint (an expanded vector, a small transposed matrix): one read, packed in memory.
      let window = UnsafeMutableRawBufferPointer(rebasing: back[0..<spanBytes])
      try file.read(at: base, into: window)
      try pack(layout, itemSize: itemSize, scratch: front, body) { offset, destination in
        guard let from = window.baseAddress, let to = destination.baseAddress else { return }
        to.copyMemory(from: from + offset, byteCount: destination.count)
      }
      return
    }
    if layout.run == 1, layout.shape.count >= 2, layout.strides[0] == 1,
      try gatherBands(layout, base: base, itemSize: itemSize, output: front, buffer: back, body)
    {
      return
    }
    try pack(layout, itemSize: itemSize, scratch: scratch, body) { offset, destination in
      try file.read(at: base + Int64(offset), into: destination)
    }
  }

  /// Packs every run into `scratch`, flushing it through `body` when full. `copy(byteOffset, destination)`
  /// fills `destination` with the bytes at `byteOffset` from the view's first element.
  func pack(
    _ layout: RunLayout, itemSize: Int, scratch: UnsafeMutableRawBufferPointer,
    _ body: (UnsafeRawBufferPointer) throws -> Void,
    copy: (Int, UnsafeMutableRawBufferPointer) throws -> Void
  ) throws {
    let runBytes = layout.run * itemSize
    var filled = 0
    try layout.forEachRun { elementOffset in
      var copied = 0
      while copied < runBytes {
        if filled == scratch.count {
          try body(UnsafeRawBufferPointer(scratch))
          filled = 0
        }
        let n = Swift.min(runBytes - copied, scratch.count - filled)
        try copy(
          elementOffset * itemSize + copied, UnsafeMutableRawBufferPointer(rebasing: scratch[filled..<(filled + n)]))
        filled += n
        copied += n
      }
    }
    if filled > 0 { try body(UnsafeRawBufferPointer(rebasing: scratch[0..<filled])) }
  }

  /// A view whose outermost dimension has stride 1 (a transposed matrix): reads bands of `k` consecutive
  /// values of that dimension (contiguous in the file) for every index of the other dimensions, one
  /// `pread` each, into `buffer`, and transposes the band into `scratch` (both the same size). Returns
  /// false when not even two values fit.
  func gatherBands(
    _ layout: RunLayout, base: Int64, itemSize: Int, output scratch: UnsafeMutableRawBufferPointer,
    buffer: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void
  ) throws -> Bool {
    let outer = layout.shape[0]
    let rest = RunLayout(shape: Array(layout.shape.dropFirst()), strides: Array(layout.strides.dropFirst()))
    // The rest has no contiguous run (the original innermost stride is not 1), so `rest.run == 1`.
    let restCount = rest.shape.reduce(1, *)
    let band = Swift.min(outer, scratch.count / Swift.max(restCount * itemSize, 1))
    guard band >= 2, rest.run == 1 else { return false }
    guard let bandBase = buffer.baseAddress, let outBase = scratch.baseAddress else { return true }
    var start = 0
    while start < outer {
      let width = Swift.min(band, outer - start)
      let rowBytes = width * itemSize
      var row = 0
      try rest.forEachRun { offset in
        try file.read(
          at: base + Int64(start + offset) * Int64(itemSize),
          into: UnsafeMutableRawBufferPointer(rebasing: buffer[(row * rowBytes)..<((row + 1) * rowBytes)]))
        row += 1
      }
      // buffer[r][i] -> scratch[i][r]
      switch itemSize {
      case 1: transpose(UInt8.self, bandBase, outBase, width, restCount)
      case 2: transpose(UInt16.self, bandBase, outBase, width, restCount)
      case 4: transpose(UInt32.self, bandBase, outBase, width, restCount)
      case 8: transpose(UInt64.self, bandBase, outBase, width, restCount)
      default:
        for i in 0..<width {
          for r in 0..<restCount {
            (outBase + (i * restCount + r) * itemSize).copyMemory(
              from: bandBase + (r * width + i) * itemSize, byteCount: itemSize)
          }
        }
      }
      try body(UnsafeRawBufferPointer(rebasing: scratch[0..<(width * restCount * itemSize)]))
      start += width
    }
    return true
  }

  /// `to[i][r] = from[r][i]` for `rows` x `columns` (`from` is `columns` rows of `rows` values).
  @inline(__always)
  private func transpose<T: FixedWidthInteger>(
    _ type: T.Type, _ from: UnsafeRawPointer, _ to: UnsafeMutableRawPointer, _ rows: Int, _ columns: Int
  ) {
    let size = MemoryLayout<T>.size
    for i in 0..<rows {
      for r in 0..<columns {
        let value = from.loadUnaligned(fromByteOffset: (r &* rows &+ i) &* size, as: T.self)
        to.storeBytes(of: value, toByteOffset: (i &* columns &+ r) &* size, as: T.self)
      }
    }
  }
}
