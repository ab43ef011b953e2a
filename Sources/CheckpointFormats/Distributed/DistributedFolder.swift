#if canImport(Glibc)
  import Glibc
#endif

/// Folder listing and name helpers shared by the distributed readers (Foundation-free).
package enum DistributedFolder {
  /// Entry names of a folder (without `.` and `..`), or nil if it cannot be listed.
  package static func names(_ folder: String) -> [String]? {
    guard let dir = opendir(folder) else { return nil }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
        pointer.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }

  static func join(_ folder: String, _ name: String) -> String {
    folder.hasSuffix("/") ? folder + name : folder + "/" + name
  }

  static func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
  }

  static func isFile(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
  }

  /// Natural order, as DeepSpeed sorts rank files: digit runs compare as numbers (rank 10 after rank 9).
  static func naturalLess(_ a: String, _ b: String) -> Bool {
    let x = chunks(a)
    let y = chunks(b)
    for (p, q) in zip(x, y) where p != q {
      switch (p, q) {
      case (.number(let m), .number(let n)): return m < n
      case (.text(let s), .text(let t)): return s < t
      case (.number, .text): return true
      case (.text, .number): return false
      }
    }
    return x.count < y.count
  }

  enum Chunk: Equatable {
    case text(String)
    case number(UInt64)
  }

  static func chunks(_ s: String) -> [Chunk] {
    var result: [Chunk] = []
    var digits = ""
    var text = ""
    for character in s {
      if character.isASCII, character.isNumber {
        if !text.isEmpty { result.append(.text(text)); text = "" }
        digits.append(character)
      } else {
        if !digits.isEmpty { result.append(.number(UInt64(digits.suffix(18)) ?? 0)); digits = "" }
        text.append(character)
      }
    }
    if !text.isEmpty { result.append(.text(text)) }
    if !digits.isEmpty { result.append(.number(UInt64(digits.suffix(18)) ?? 0)) }
    return result
  }

  /// The bytes `[start, start + count)` of the concatenation of `pieces`, as pieces.
  static func slice(_ pieces: [FilePiece], start: Int64, count: Int64) -> [FilePiece] {
    var result: [FilePiece] = []
    var base: Int64 = 0
    let end = start + count
    for piece in pieces {
      let lo = Swift.max(start, base)
      let hi = Swift.min(end, base + piece.byteCount)
      if lo < hi {
        result.append(FilePiece(file: piece.file, offset: piece.offset + (lo - base), byteCount: hi - lo))
      }
      base += piece.byteCount
      if base >= end { break }
    }
    return result
  }
}
