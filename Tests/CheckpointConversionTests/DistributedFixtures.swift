import CheckpointFormats
import Foundation

/// Writes small DeepSpeed-shaped ZeRO checkpoints: the same pickle structure and globals DeepSpeed 0.19
/// writes (see reference/distributed-checkpoints.md), with hand-chosen partitions so that parameters
/// cross rank boundaries. The interop suite checks real DeepSpeed output; these pin the mapping rules.
struct ZeroFixture {
  /// Protocol-2 pickle bytes, built opcode by opcode.
  struct Pickle {
    var bytes: [UInt8] = [0x80, 0x02]
    mutating func op(_ code: UInt8) { bytes.append(code) }
    mutating func global(_ module: String, _ name: String) {
      op(0x63)
      bytes += Array("\(module)\n\(name)\n".utf8)
    }
    mutating func string(_ s: String) {
      op(0x58)
      let utf8 = Array(s.utf8)
      bytes += withUnsafeBytes(of: UInt32(utf8.count).littleEndian) { Array($0) } + utf8
    }
    mutating func int(_ v: Int) {
      op(0x4A)
      bytes += withUnsafeBytes(of: Int32(v).littleEndian) { Array($0) }
    }
    mutating func mark() { op(0x28) }
    mutating func intTuple(_ values: [Int]) {
      mark()
      values.forEach { int($0) }
      op(0x74)
    }
    mutating func size(_ shape: [Int]) {
      global("torch", "Size")
      mark()
      intTuple(shape)
      op(0x74)
      op(0x52)
    }
    /// A 1-D float32 tensor over storage `key` of `storageNumel` elements.
    mutating func tensor(
      key: String, storageNumel: Int, count: Int, wrapped: Bool = false, storageClass: String = "FloatStorage"
    ) {
      if wrapped {
        global("torch._tensor", "_rebuild_from_type_v2")
        mark()
        global("torch._utils", "_rebuild_tensor_v2")
        global("torch", "Tensor")
      } else {
        global("torch._utils", "_rebuild_tensor_v2")
      }
      mark()
      mark()
      string("storage")
      global("torch", storageClass)
      string(key)
      string("cpu")
      int(storageNumel)
      op(0x74)
      op(0x51)  // BINPERSID
      int(0)
      intTuple([count])
      intTuple([1])
      op(0x89)
      global("collections", "OrderedDict")
      op(0x29)
      op(0x52)
      op(0x74)
      if wrapped {
        op(0x7D)
        string("ds_id")
        string("0_1")
        op(0x73)
        op(0x74)
      }
      op(0x52)
    }
    /// `{k: v, ...}` where each value is emitted by its closure.
    mutating func dict(_ items: [(String, (inout Pickle) -> Void)]) {
      op(0x7D)
      mark()
      for (key, value) in items {
        string(key)
        value(&self)
      }
      op(0x75)
    }
    mutating func list(_ items: [(inout Pickle) -> Void]) {
      op(0x5D)
      mark()
      for item in items { item(&self) }
      op(0x65)
    }
  }

  let folder: String

  static func f32(_ values: [Float]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
  }

  func writeZip(_ name: String, pickle: Pickle, records: [(String, [UInt8])]) throws {
    let path = folder + "/" + name
    let output = try OutputFile(path: path)
    let zip = try ZipWriter(
      output: output, archiveName: ((name as NSString).lastPathComponent as NSString).deletingPathExtension)
    try zip.addRecord("data.pkl", bytes: pickle.bytes + [0x2E])
    try zip.addRecord("byteorder", bytes: Array("little".utf8))
    for (key, data) in records { try zip.addRecord("data/\(key)", bytes: data) }
    try zip.addRecord("version", bytes: Array("3\n".utf8))
    try zip.finish()
    try output.commit(replace: true)
  }

  /// Model states: `param_shapes` (one group) and `shared_params`; with `buffers`, `module` also holds an
  /// int64 buffer `steps` = [7, 8] and a bfloat16 buffer `scale` = [1.5, -2] (listed in `buffer_names`).
  func modelStates(_ name: String, shapes: [(String, [Int])], shared: [(String, String)], buffers: Bool = false)
    throws
  {
    var p = Pickle()
    p.dict([
      (
        "module",
        { p in
          guard buffers else { return p.op(0x7D) }
          p.dict([
            ("steps", { $0.tensor(key: "0", storageNumel: 2, count: 2, storageClass: "LongStorage") }),
            ("scale", { $0.tensor(key: "1", storageNumel: 2, count: 2, storageClass: "BFloat16Storage") }),
          ])
        }
      ),
      ("buffer_names", { p in p.list(buffers ? [{ $0.string("steps") }, { $0.string("scale") }] : []) }),
      ("optimizer", { $0.op(0x4E) }),
      (
        "param_shapes",
        { p in
          p.list([
            { q in
              q.global("collections", "OrderedDict")
              q.op(0x29)
              q.op(0x52)
              q.mark()
              for (name, shape) in shapes {
                q.string(name)
                q.size(shape)
              }
              q.op(0x75)
            }
          ])
        }
      ),
      ("frozen_param_shapes", { $0.op(0x4E) }),
      ("shared_params", { p in p.dict(shared.map { alias, target in (alias, { $0.string(target) }) }) }),
      ("dp_world_size", { $0.int(2) }),
    ])
    let steps = [Int64(7), 8].flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    let scale: [UInt8] = [0xC0, 0x3F, 0x00, 0xC0]  // bfloat16 1.5, -2.0
    try writeZip(name, pickle: p, records: buffers ? [("0", steps), ("1", scale)] : [])
  }

  /// One rank's optimizer file holding one fp32 group (`values`, over a storage of `storageNumel`).
  func optimStates(_ name: String, stage: Int, values: [Float], storageNumel: Int, partitionCount: Int = 2) throws {
    var p = Pickle()
    p.dict([
      (
        "optimizer_state_dict",
        { p in
          p.dict([
            (
              "loss_scaler",
              { q in
                q.global("deepspeed.runtime.fp16.loss_scaler", "LossScaler")
                q.op(0x29)
                q.op(0x81)  // NEWOBJ
                q.dict([("cur_scale", { $0.int(1) })])
                q.op(0x62)  // BUILD
              }
            ),
            (
              "zero_stage",
              { q in
                q.global("deepspeed.runtime.zero.config", "ZeroStageEnum")
                q.mark()
                q.int(stage)
                q.op(0x74)
                q.op(0x52)
              }
            ),
            ("partition_count", { q in stage == 3 ? q.int(partitionCount) : q.list([{ $0.int(partitionCount) }]) }),
            (
              stage == 3 ? "fp32_flat_groups" : "single_partition_of_fp32_groups",
              { q in
                q.list([{ $0.tensor(key: "0", storageNumel: storageNumel, count: values.count, wrapped: stage == 3) }])
              }
            ),
          ])
        }
      ),
      ("ds_version", { $0.string("0.19.8") }),
    ])
    var storage = ZeroFixture.f32(values)
    storage += [UInt8](repeating: 0, count: (storageNumel - values.count) * 4)
    try writeZip(name, pickle: p, records: [("0", storage)])
  }

  /// ZeRO-2, world size 2: a (3) and b (2x2) = 7 elements, padded to 8; rank 0 holds 4, rank 1 the last 3
  /// (its padding stripped, storage of 4). b crosses the rank boundary. `c` is tied to `a`.
  func writeZero2(tag: String = "global_step4") throws {
    try FileManager.default.createDirectory(atPath: folder + "/" + tag, withIntermediateDirectories: true)
    try modelStates(
      "\(tag)/mp_rank_00_model_states.pt", shapes: [("a", [3]), ("b", [2, 2])], shared: [("c", "a")], buffers: true)
    try optimStates(
      "\(tag)/zero_pp_rank_0_mp_rank_00_optim_states.pt", stage: 2, values: [1, 2, 3, 4], storageNumel: 4)
    try optimStates("\(tag)/zero_pp_rank_1_mp_rank_00_optim_states.pt", stage: 2, values: [5, 6, 7], storageNumel: 4)
    try Data(tag.utf8).write(to: URL(fileURLWithPath: folder + "/latest"))
  }

  /// ZeRO-3, world size 2: a (3) takes 2 per rank, b (2x2) 2 per rank; rank 0 = a0 a1 b0 b1, rank 1 = a2 pad b2 b3.
  func writeZero3(tag: String = "global_step4") throws {
    try FileManager.default.createDirectory(atPath: folder + "/" + tag, withIntermediateDirectories: true)
    for rank in 0..<2 {
      try modelStates(
        "\(tag)/zero_pp_rank_\(rank)_mp_rank_00_model_states.pt", shapes: [("a", [3]), ("b", [2, 2])],
        shared: rank == 0 ? [("c", "a")] : [])
    }
    try optimStates(
      "\(tag)/zero_pp_rank_0_mp_rank_00_optim_states.pt", stage: 3, values: [1, 2, 4, 5], storageNumel: 4)
    try optimStates(
      "\(tag)/zero_pp_rank_1_mp_rank_00_optim_states.pt", stage: 3, values: [3, 0, 6, 7], storageNumel: 4)
    try Data(tag.utf8).write(to: URL(fileURLWithPath: folder + "/latest"))
  }
}
