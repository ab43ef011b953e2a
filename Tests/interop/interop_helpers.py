"""Helpers shared by the interop tests: bit-exact comparison, loading with the real clients, file snapshots."""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

TEMP_MARK = ".ckptd-tmp"

# Every dtype both formats can express (safetensors name -> torch dtype).
DTYPES = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "U16": torch.uint16,
    "I32": torch.int32,
    "U32": torch.uint32,
    "I64": torch.int64,
    "U64": torch.uint64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "C64": torch.complex64,
}
TORCH_TO_ST = {v: k for k, v in DTYPES.items()}


def safetensors_supports(dtype: torch.dtype) -> bool:
    """Whether the installed safetensors library can hold this dtype."""
    import safetensors.torch as st

    return dtype in getattr(st, "_TYPES", {}).values()


def random_tensor(dtype: torch.dtype, shape, seed: int = 0) -> torch.Tensor:
    """Random bit patterns of `dtype` (NaN payloads, infinities, subnormals included); bool is 0/1."""
    gen = torch.Generator().manual_seed(seed)
    count = 1
    for dim in shape:
        count *= dim
    if dtype == torch.bool:
        return torch.randint(0, 2, tuple(shape), generator=gen, dtype=torch.uint8).bool()
    item = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (count * item,), generator=gen, dtype=torch.uint8)
    return raw.view(dtype).reshape(tuple(shape)).clone()


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes in C order as a flat uint8 tensor."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def assert_same_tensor(got: torch.Tensor, want: torch.Tensor, name: str = "") -> None:
    """Same dtype, same shape, same bytes (NaN-safe because bytes are compared)."""
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
    assert tuple(got.shape) == tuple(want.shape), f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.equal(bits(got), bits(want)), f"{name}: bytes differ"


def assert_same_dict(got: dict, want: dict, what: str = "") -> None:
    """Same names, and every tensor bit for bit."""
    assert set(got) == set(want), f"{what}: names differ: missing {set(want) - set(got)}, extra {set(got) - set(want)}"
    for name in want:
        assert_same_tensor(got[name], want[name], f"{what}{name}")


def load_bin(path, mmap: bool = False) -> dict:
    """torch.load(weights_only=True), optionally with mmap=True; returns a plain dict."""
    sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    return dict(sd)


def load_st(path) -> dict:
    """safetensors.torch.load_file."""
    return dict(load_file(str(path)))


def load_st_open(path):
    """safe_open: (dict of tensors, metadata)."""
    out = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        for key in f.keys():
            out[key] = f.get_tensor(key)
    return out, meta


def load_any(path) -> dict:
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_st(path)
    return load_bin(path)


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def snapshot(folder) -> dict:
    """{relative name: sha256} of every regular file under folder."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_leftovers(folder) -> list:
    return [str(p) for p in Path(folder).rglob("*") if TEMP_MARK in p.name]


def assert_one_line_error(rc: int, err: str, path) -> str:
    """Exit 1 with exactly one stderr line `ckptd: <file>: <reason>` naming the file."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1, f"expected exit 1, got {rc}; stderr={err!r}"
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].startswith("ckptd: "), lines[0]
    assert Path(path).name in lines[0], f"stderr does not name {Path(path).name}: {lines[0]!r}"
    return lines[0]


def convert(run_ckptd, path, to: str, *extra, expect_rc: int = 0):
    """Run `ckptd convert PATH --to TO ...`; asserts the exit code; returns (rc, out, err)."""
    extra = tuple(str(e) for e in extra)
    rc, out, err = run_ckptd("convert", str(path), "--to", to, *extra)
    assert rc == expect_rc, f"ckptd convert {path} --to {to} {' '.join(extra)}: rc={rc}\nstdout={out}\nstderr={err}"
    return rc, out, err


def convert_folder_checked(run_ckptd, folder, to: str, *extra, removed=()):
    """Converts a folder in place and checks: exit 0, source files byte-identical (except `removed`, which must
    be gone), no temporary files, folder mtime unchanged. Returns the set of new file names."""
    folder = Path(folder)
    before = snapshot(folder)
    mtime = os.stat(folder).st_mtime_ns
    convert(run_ckptd, folder, to, *extra)
    after = snapshot(folder)
    for name, digest in before.items():
        if name in removed:
            assert name not in after, f"{name} should have been removed"
        else:
            assert after.get(name) == digest, f"source file {name} changed or vanished"
    assert not temp_leftovers(folder), temp_leftovers(folder)
    assert os.stat(folder).st_mtime_ns == mtime, "folder mtime changed"
    return set(after) - set(before)


def copy_files(src_folder, dst_folder, names) -> Path:
    dst_folder = Path(dst_folder)
    dst_folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(Path(src_folder) / name, dst_folder / name)
    return dst_folder


def zip_test(path) -> None:
    """Python's zipfile must read every record and find its CRC-32 right (`testzip()`; `python -m zipfile -t`
    only prints a bad record and still exits 0)."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    assert bad is None, f"{path}: zip record {bad!r} fails its CRC-32 check"


def norm_dtype(value) -> torch.dtype:
    """Accepts safetensors names (F32), torch names (float32, torch.float32) from `inspect --json`."""
    text = str(value)
    if text in DTYPES:
        return DTYPES[text]
    if text.upper() in DTYPES:
        return DTYPES[text.upper()]
    text = text.removeprefix("torch.")
    dtype = getattr(torch, text, None)
    if isinstance(dtype, torch.dtype):
        return dtype
    raise AssertionError(f"unknown dtype in inspect --json: {value!r}")


def inspect_tensors(stdout: str) -> dict:
    """Parses `ckptd inspect --json`: {name: (torch dtype, shape list)}; tensors as a list or a name-keyed dict."""
    doc = json.loads(stdout)
    tensors = doc["tensors"] if isinstance(doc, dict) else doc
    items = tensors.items() if isinstance(tensors, dict) else ((entry["name"], entry) for entry in tensors)
    return {name: (norm_dtype(entry["dtype"]), [int(d) for d in entry["shape"]]) for name, entry in items}


def torch_style_zip(path: Path, pkl: bytes, storages=None) -> None:
    """Writes a zip exactly as torch.save lays it out, with our own data.pkl (torch's own record writer)."""
    writer = torch._C.PyTorchFileWriter(str(path))
    writer.write_record("data.pkl", pkl, len(pkl))
    for key, data in (storages or {}).items():
        writer.write_record(f"data/{key}", data, len(data))
    writer.write_record("byteorder", b"little", 6)
    writer.write_end_of_file()


def literal_os_system_pickle(marker: Path) -> bytes:
    """Protocol 2: {'w': os.system('touch MARKER')} with a literal GLOBAL 'os system'."""
    cmd = f"touch {marker}".encode()
    return (
        b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01cos\nsystem\nq\x02X"
        + struct.pack("<I", len(cmd))
        + cmd
        + b"q\x03\x85q\x04Rq\x05s."
    )
