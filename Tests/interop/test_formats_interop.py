"""Issue 2: single weight files written by real torch.save / safetensors.save_file, converted by
`ckptd convert FILE --to ...`, read back by the real clients and compared bit for bit."""

import os
import shutil
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from interop_helpers import (
    DTYPES,
    assert_one_line_error,
    assert_same_dict,
    assert_same_tensor,
    convert,
    inspect_tensors,
    load_bin,
    load_st,
    load_st_open,
    random_tensor,
    safetensors_supports,
    temp_leftovers,
    zip_test,
)

SHAPES = {"scalar": (), "empty": (0, 3), "vec": (7,), "mat": (3, 5), "rank5": (2, 1, 3, 1, 2)}


def dtype_dict(name: str) -> dict:
    dtype = DTYPES[name]
    return {f"{name}.{key}": random_tensor(dtype, shape, seed=i) for i, (key, shape) in enumerate(SHAPES.items())}


def supported_dtype_dict(name: str) -> dict:
    """dtype_dict(name); skips the test when this safetensors version cannot store the dtype."""
    if not safetensors_supports(DTYPES[name]):
        pytest.skip(f"safetensors {name} not supported by this safetensors version")
    return dtype_dict(name)


def check_bin(path: Path, want: dict) -> None:
    """Loads a ckptd-written .bin with torch.load (plain and mmap) and checks the zip itself."""
    assert path.read_bytes()[:4] == b"PK\x03\x04"
    zip_test(path)
    assert_same_dict(load_bin(path), want, "torch.load: ")
    assert_same_dict(load_bin(path, mmap=True), want, "torch.load(mmap): ")


def check_st(path: Path, want: dict) -> dict:
    """Loads a ckptd-written safetensors file with safe_open and load_file; returns its __metadata__."""
    got, meta = load_st_open(path)
    assert_same_dict(got, want, "safe_open: ")
    assert_same_dict(load_st(path), want, "load_file: ")
    assert meta is not None and meta.get("format") == "pt", f"__metadata__ = {meta!r}"
    return meta


def to_safetensors_and_back(run_ckptd, tmp_path: Path, src: Path, want: dict, want_in_st=None) -> dict:
    """src (.bin) -> safetensors (checked) -> .bin in a fresh folder (checked); returns the st metadata."""
    convert(run_ckptd, src, "safetensors")
    st = src.with_suffix(".safetensors")
    meta = check_st(st, want if want_in_st is None else want_in_st)
    back = tmp_path / "back"
    back.mkdir()
    shutil.copy2(st, back / st.name)
    convert(run_ckptd, back / st.name, "bin")
    check_bin(back / (st.stem + ".bin"), want)
    return meta


@pytest.mark.parametrize("name", list(DTYPES))
def test_every_dtype_bin_to_safetensors_and_back(tmp_path, run_ckptd, name):
    sd = supported_dtype_dict(name)
    src = tmp_path / "w.bin"
    torch.save(sd, src)
    to_safetensors_and_back(run_ckptd, tmp_path, src, sd)


@pytest.mark.parametrize("name", list(DTYPES))
def test_every_dtype_safetensors_to_bin_and_back(tmp_path, run_ckptd, name):
    sd = supported_dtype_dict(name)
    src = tmp_path / "w.safetensors"
    save_file(sd, src, metadata={"format": "pt", "note": "kept"})
    convert(run_ckptd, src, "bin")
    check_bin(tmp_path / "w.bin", sd)
    back = tmp_path / "back"
    back.mkdir()
    shutil.copy2(tmp_path / "w.bin", back / "w.bin")
    convert(run_ckptd, back / "w.bin", "safetensors")
    check_st(back / "w.safetensors", sd)


def test_safetensors_output_is_byte_identical_to_reference_writer(tmp_path, run_ckptd):
    """Compact header, __metadata__ first, dtype-then-name order, space padding: same bytes as save_file."""
    sd = {}
    for i, name in enumerate(["BOOL", "U8", "F16", "BF16", "F32", "F64", "I64", "F8_E4M3", "I32"]):
        sd[f"z{i}.{name.lower()}"] = random_tensor(DTYPES[name], (i + 1, 3), seed=i)
        sd[f"a{i}.{name.lower()}"] = random_tensor(DTYPES[name], (2,), seed=100 + i)
    sd["scalar"] = torch.tensor(1.5)
    sd["empty"] = torch.zeros(0, 4)
    src = tmp_path / "w.bin"
    torch.save(sd, src)
    convert(run_ckptd, src, "safetensors")
    save_file(sd, tmp_path / "ref.safetensors", metadata={"format": "pt"})
    assert (tmp_path / "w.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()


def test_ten_thousand_tensors_both_ways(tmp_path, run_ckptd):
    rows = torch.randn(10_000, 3, generator=torch.Generator().manual_seed(1))
    sd = {f"layers.{i}.weight": rows[i].clone() for i in range(10_000)}
    torch.save(sd, tmp_path / "many.bin")
    to_safetensors_and_back(run_ckptd, tmp_path, tmp_path / "many.bin", sd)
    other = tmp_path / "st"
    other.mkdir()
    save_file(sd, other / "many.safetensors")
    convert(run_ckptd, other / "many.safetensors", "bin")
    assert_same_dict(load_bin(other / "many.bin"), sd)


NON_ASCII = ["emb.wëight", "层.0", "naïve.ключ.重み", "emoji.🙂"]


@pytest.mark.parametrize("source", ["bin", "safetensors"])
def test_non_ascii_names(tmp_path, run_ckptd, source):
    sd = {name: torch.randn(2, i + 1) for i, name in enumerate(NON_ASCII)}
    if source == "bin":
        torch.save(sd, tmp_path / "w.bin")
        to_safetensors_and_back(run_ckptd, tmp_path, tmp_path / "w.bin", sd)
    else:
        save_file(sd, tmp_path / "w.safetensors")
        convert(run_ckptd, tmp_path / "w.safetensors", "bin")
        check_bin(tmp_path / "w.bin", sd)


def test_parameters(tmp_path, run_ckptd):
    sd = {
        "w": torch.nn.Parameter(torch.randn(3, 4)),
        "b": torch.nn.Parameter(torch.randn(4), requires_grad=False),
        "plain": torch.randn(2),
    }
    torch.save(sd, tmp_path / "w.bin")
    want = {k: v.detach() for k, v in sd.items()}
    to_safetensors_and_back(run_ckptd, tmp_path, tmp_path / "w.bin", want)


def test_tied_names_written_once_and_restored_as_shared_storage(tmp_path, run_ckptd):
    shared = torch.randn(5, 4)
    sd = {"transformer.wte.weight": shared, "lm_head.weight": shared, "ln.bias": torch.randn(4)}
    torch.save(sd, tmp_path / "w.bin")
    convert(run_ckptd, tmp_path / "w.bin", "safetensors")
    st, meta = load_st_open(tmp_path / "w.safetensors")
    tied = {"transformer.wte.weight", "lm_head.weight"}
    kept = tied & set(st)
    assert len(kept) == 1, f"exactly one of the tied names is written, got {sorted(st)}"
    (kept_name,) = kept
    (dropped_name,) = tied - kept
    assert set(st) == {kept_name, "ln.bias"}
    assert meta.get(dropped_name) == kept_name, f"__metadata__ {meta!r} lacks {{{dropped_name}: {kept_name}}}"
    assert meta.get("format") == "pt"
    assert_same_tensor(st[kept_name], shared, kept_name)

    back = tmp_path / "back"
    back.mkdir()
    shutil.copy2(tmp_path / "w.safetensors", back / "w.safetensors")
    convert(run_ckptd, back / "w.safetensors", "bin")
    for mmap in (False, True):
        again = load_bin(back / "w.bin", mmap=mmap)
        assert_same_dict(again, sd)
        a, b = again["transformer.wte.weight"], again["lm_head.weight"]
        assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr(), "tied names no longer share storage"


def test_views_are_written_as_their_own_contiguous_tensors(tmp_path, run_ckptd):
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    flat = base.view(-1)
    sd = {
        "base": base,
        "transposed": base.t(),
        "rows": base[1:3],
        "strided": base[:, ::2],
        "column": base[:, 5],
        "expanded": torch.randn(1, 8).expand(4, 8),
        "overlap_a": flat[0:20],
        "overlap_b": flat[10:30],
        "offset_scalar": flat[7],
    }
    torch.save(sd, tmp_path / "w.bin")
    want = {k: v.contiguous() for k, v in sd.items()}
    to_safetensors_and_back(run_ckptd, tmp_path, tmp_path / "w.bin", want)


def test_legacy_torch_file(tmp_path, run_ckptd):
    shared = torch.randn(3, 3)
    sd = {
        "f32": torch.randn(4, 2),
        "f16": torch.randn(3).half(),
        "bf16": torch.randn(3).bfloat16(),
        "i64": torch.arange(5),
        "u8": torch.arange(6, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "tied_a": shared,
        "tied_b": shared,
        "view": shared[1:, ::2],
    }
    src = tmp_path / "legacy.pt"
    torch.save(sd, src, _use_new_zipfile_serialization=False)
    assert src.read_bytes()[:4] != b"PK\x03\x04"
    want = {k: v.contiguous() for k, v in sd.items()}
    convert(run_ckptd, src, "safetensors")
    st, meta = load_st_open(tmp_path / "legacy.safetensors")
    restored = {k: st[meta[k]] if k not in st else st[k] for k in want}
    assert_same_dict(restored, want)


def test_ordered_dict_with_metadata(tmp_path, run_ckptd):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.LayerNorm(3))
    sd = model.state_dict()
    assert isinstance(sd, OrderedDict) and hasattr(sd, "_metadata")
    torch.save(sd, tmp_path / "w.bin")
    to_safetensors_and_back(run_ckptd, tmp_path, tmp_path / "w.bin", dict(sd))


def test_state_dict_wrapper(tmp_path, run_ckptd):
    sd = {"encoder.weight": torch.randn(3, 2), "encoder.bias": torch.randn(3)}
    torch.save({"state_dict": sd}, tmp_path / "w.bin")
    convert(run_ckptd, tmp_path / "w.bin", "safetensors")
    check_st(tmp_path / "w.safetensors", sd)


@pytest.mark.parametrize(
    "source, target",
    [
        ("pytorch_model.bin", "model.safetensors"),
        ("model.safetensors", "pytorch_model.bin"),
        ("pytorch_model-00001-of-00003.bin", "model-00001-of-00003.safetensors"),
        ("model-00002-of-00003.safetensors", "pytorch_model-00002-of-00003.bin"),
        ("adapter_model.bin", "adapter_model.safetensors"),
        ("adapter_model.safetensors", "adapter_model.bin"),
        ("colbert_linear.pt", "colbert_linear.safetensors"),
        ("extra.bin", "extra.safetensors"),
    ],
)
def test_output_names(tmp_path, run_ckptd, source, target):
    sd = {"w": torch.randn(2, 2)}
    src = tmp_path / source
    if source.endswith(".safetensors"):
        save_file(sd, src)
    else:
        torch.save(sd, src)
    convert(run_ckptd, src, "bin" if target.endswith(".bin") else "safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({source, target})
    assert_same_dict(load_st(tmp_path / target) if target.endswith(".safetensors") else load_bin(tmp_path / target), sd)


def test_out_directory(tmp_path, run_ckptd):
    sd = {"w": torch.randn(3)}
    src_dir, out_dir = tmp_path / "src", tmp_path / "out"
    src_dir.mkdir()
    out_dir.mkdir()
    torch.save(sd, src_dir / "pytorch_model.bin")
    convert(run_ckptd, src_dir / "pytorch_model.bin", "safetensors", "--out", out_dir)
    assert [p.name for p in src_dir.iterdir()] == ["pytorch_model.bin"]
    assert [p.name for p in out_dir.iterdir()] == ["model.safetensors"]
    check_st(out_dir / "model.safetensors", sd)


def mixed_dict() -> dict:
    shared = torch.randn(2, 3)
    return {
        "a.f32": torch.randn(3, 4),
        "b.bf16": torch.randn(5).bfloat16(),
        "c.i64": torch.tensor(7),
        "d.empty": torch.zeros(0, 2, dtype=torch.float16),
        "e.bool": torch.tensor([[True], [False]]),
        "f.fp8": torch.randn(4).to(torch.float8_e5m2),
        "g.u16": torch.arange(3).to(torch.uint16),
        "tied.x": shared,
        "tied.y": shared,
        "view.t": shared.t(),
        "层.0": torch.randn(1),
    }


@pytest.mark.parametrize("source", ["bin", "safetensors"])
def test_inspect_json_agrees_with_torch(tmp_path, run_ckptd, source):
    sd = mixed_dict()
    if source == "bin":
        path = tmp_path / "w.bin"
        torch.save(sd, path)
        want = sd
    else:
        path = tmp_path / "w.safetensors"
        want = {k: v.contiguous() for k, v in sd.items() if k != "tied.y"}
        want["view.t"] = want["view.t"].clone()
        want["tied.x"] = want["tied.x"].clone()
        save_file(want, path)
    rc, out, err = run_ckptd("inspect", path, "--json")
    assert rc == 0, err
    got = inspect_tensors(out)
    assert got == {k: (v.dtype, list(v.shape)) for k, v in want.items()}


def test_verify_converted_pair_and_tampered_copy(tmp_path, run_ckptd):
    sd = {"x": torch.randn(64, 8), "y": torch.randn(3), "s": torch.tensor(1.0)}
    torch.save(sd, tmp_path / "w.bin")
    convert(run_ckptd, tmp_path / "w.bin", "safetensors")
    rc, out, err = run_ckptd("verify", tmp_path / "w.bin", tmp_path / "w.safetensors")
    assert rc == 0, f"verify of a converted pair failed: {out} {err}"

    tampered = tmp_path / "tampered.safetensors"
    data = bytearray((tmp_path / "w.safetensors").read_bytes())
    data[-1] ^= 0x01
    tampered.write_bytes(bytes(data))
    rc, out, err = run_ckptd("verify", tmp_path / "w.bin", tampered)
    assert rc == 1, f"verify must fail on a tampered copy: rc={rc} {out} {err}"

    fewer = tmp_path / "fewer.safetensors"
    save_file({"x": sd["x"], "y": sd["y"]}, fewer)
    rc, out, err = run_ckptd("verify", tmp_path / "w.bin", fewer)
    assert rc == 1, f"verify must fail when a name is missing: rc={rc} {out} {err}"


def test_existing_target_is_not_overwritten_without_force(tmp_path, run_ckptd):
    sd = {"w": torch.randn(4)}
    save_file(sd, tmp_path / "model.safetensors")
    foreign = tmp_path / "pytorch_model.bin"
    foreign.write_bytes(b"not written by ckptd\n")
    rc, out, err = run_ckptd("convert", tmp_path / "model.safetensors", "--to", "bin")
    assert_one_line_error(rc, err, "pytorch_model.bin")
    assert foreign.read_bytes() == b"not written by ckptd\n"
    assert not temp_leftovers(tmp_path)
    convert(run_ckptd, tmp_path / "model.safetensors", "bin", "--force")
    check_bin(foreign, sd)


def test_failure_in_the_middle_leaves_no_temporary(tmp_path, run_ckptd):
    """Inject a write failure (RLIMIT_FSIZE -> EFBIG) mid-stream: exit 1, no output, no temp, source intact."""
    import resource
    import signal

    sd = {f"t{i}": torch.randn(64, 1024) for i in range(4)}  # 1 MiB of f32
    src = tmp_path / "big.safetensors"
    save_file(sd, src)
    before = src.read_bytes()

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    rc, out, err = run_ckptd("convert", src, "--to", "bin", preexec_fn=limit)
    assert rc == 1, f"rc={rc} {out} {err}"
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.safetensors"]
    assert src.read_bytes() == before
    assert os.path.getsize(src) == len(before)


def test_safetensors_whose_header_length_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path, run_ckptd):
    """The first byte of a safetensors file is the low byte of the header length: 0x80 must not look like a
    legacy torch pickle (PROTO) nor 'PK' like a zip."""
    import struct

    sd = {"w": torch.randn(3, 2), "b": torch.arange(4)}
    src = tmp_path / "w.safetensors"
    for pad in range(0, 300):
        save_file(sd, src, metadata={"format": "pt", "pad": "x" * pad})
        if src.read_bytes()[0] == 0x80:
            break
    assert src.read_bytes()[0] == 0x80, struct.unpack("<Q", src.read_bytes()[:8])
    rc, out, err = run_ckptd("inspect", src, "--json")
    assert rc == 0, err
    assert inspect_tensors(out) == {k: (v.dtype, list(v.shape)) for k, v in sd.items()}
    convert(run_ckptd, src, "bin")
    check_bin(tmp_path / "w.bin", sd)


def test_zip_crcs_of_every_length_pass_pythons_check(tmp_path, run_ckptd):
    """The CRC-32 of each record (folded 16 bytes at a time with PCLMULQDQ where the CPU has it, the tail by zlib)
    as Python's zipfile checks it: record lengths around the folding's block sizes, odd tails, and 3 MiB."""
    sizes = [1, 15, 16, 17, 63, 64, 65, 79, 80, 127, 128, 129, 1000, 4097, 65_537, 3 * 1024 * 1024 + 5]
    sd = {f"t{n}": random_tensor(torch.uint8, (n,), seed=n) for n in sizes}
    src = tmp_path / "w.safetensors"
    save_file(sd, src, metadata={"format": "pt"})
    convert(run_ckptd, src, "bin")
    check_bin(tmp_path / "w.bin", sd)
