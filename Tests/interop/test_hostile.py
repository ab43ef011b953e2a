"""Hostile and broken inputs: pickles that would run code, truncated / padded safetensors, truncated zips.
ckptd must refuse them with exit 1 and one stderr line naming the file (and the global), run nothing,
and leave neither an output nor a temporary file behind."""

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from interop_helpers import assert_one_line_error, literal_os_system_pickle, torch_style_zip


class Reduce:
    """Pickles as `func(*args)`: exactly what an attacker's object does."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker: Path):
    import builtins
    import subprocess as sp

    m = str(marker)
    return {
        "os.system": (os.system, (f"touch {m}",), r"(os|posix)\W+system"),
        "builtins.eval": (builtins.eval, (f"open({m!r}, 'w').close()",), r"(builtins|__builtin__)\W+eval"),
        "builtins.exec": (builtins.exec, (f"open({m!r}, 'w').close()",), r"(builtins|__builtin__)\W+exec"),
        "subprocess.Popen": (sp.Popen, (["touch", m],), r"(subprocess|commands)\W+Popen"),
    }


def stack_global_pickle(marker: Path) -> bytes:
    """Protocol 4 with STACK_GLOBAL ('os', 'system') and FRAME."""
    cmd = f"touch {marker}".encode()
    body = (
        b"}\x94\x8c\x01w\x94\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c"
        + bytes([len(cmd)])
        + cmd
        + b"\x94\x85\x94R\x94s."
    )
    return b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body


def assert_refused(run_ckptd, folder: Path, src: Path, marker: Path, pattern=None, command="convert"):
    listing = sorted(p.name for p in folder.iterdir())
    args = ("convert", src, "--to", "safetensors") if command == "convert" else ("inspect", src)
    rc, out, err = run_ckptd(*args)
    line = assert_one_line_error(rc, err, src)
    if pattern:
        import re

        assert re.search(pattern, line), f"stderr does not name the global ({pattern}): {line!r}"
    assert not marker.exists(), "the pickle's command ran"
    assert sorted(p.name for p in folder.iterdir()) == listing, "an output or temporary file was left behind"
    return line


def prove_hostile(src: Path, marker: Path) -> None:
    """The fixture is real: an unrestricted torch.load would run it (in a child process)."""
    code = (
        "import sys, pickle, torch\n"
        "try:\n"
        "    torch.load(sys.argv[1], weights_only=False)\n"
        "except Exception:\n"
        "    pass\n"
    )
    subprocess.run([sys.executable, "-c", code, str(src)], capture_output=True, timeout=120)
    assert marker.exists(), "fixture is not hostile: unrestricted torch.load did not run it"


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_torch_save_with_malicious_reduce_is_refused(tmp_path, run_ckptd, kind, protocol):
    marker = tmp_path / "MARKER"
    func, args, pattern = payloads(marker)[kind]
    folder = tmp_path / "ckpt"
    folder.mkdir()
    src = folder / "pytorch_model.bin"
    torch.save({"w": torch.randn(3), "payload": Reduce(func, args)}, src, pickle_protocol=protocol)
    assert_refused(run_ckptd, folder, src, marker, pattern)
    assert_refused(run_ckptd, folder, src, marker, pattern, command="inspect")
    prove_hostile(src, marker)


@pytest.mark.parametrize("builder", [literal_os_system_pickle, stack_global_pickle])
def test_handwritten_os_system_pickle_is_refused(tmp_path, run_ckptd, builder):
    marker = tmp_path / "MARKER"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    src = folder / "pytorch_model.bin"
    torch_style_zip(src, builder(marker))
    assert_refused(run_ckptd, folder, src, marker, r"os\W+system")
    prove_hostile(src, marker)


def test_hostile_file_in_a_checkpoint_folder_fails_the_conversion(tmp_path, run_ckptd):
    marker = tmp_path / "MARKER"
    folder = tmp_path / "checkpoint-10"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    torch.save({"w": Reduce(os.system, (f"touch {marker}",))}, folder / "pytorch_model.bin")
    listing = sorted(p.name for p in folder.iterdir())
    rc, out, err = run_ckptd("convert", folder, "--to", "safetensors")
    assert rc == 1, f"rc={rc} {out} {err}"
    assert "pytorch_model.bin" in err
    assert not marker.exists()
    assert sorted(p.name for p in folder.iterdir()) == listing


def safetensors_file(path: Path) -> bytes:
    save_file({"a": torch.randn(16, 4), "b": torch.arange(10)}, path, metadata={"format": "pt"})
    return path.read_bytes()


@pytest.mark.parametrize("cut", ["data", "header", "length"])
def test_truncated_safetensors_is_refused(tmp_path, run_ckptd, cut):
    src = tmp_path / "model.safetensors"
    data = safetensors_file(src)
    header_len = struct.unpack("<Q", data[:8])[0]
    keep = {"data": len(data) - 5, "header": 8 + header_len // 2, "length": 5}[cut]
    src.write_bytes(data[:keep])
    rc, out, err = run_ckptd("convert", src, "--to", "bin")
    assert_one_line_error(rc, err, src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 64])
def test_safetensors_with_trailing_bytes_is_refused(tmp_path, run_ckptd, extra):
    src = tmp_path / "model.safetensors"
    data = safetensors_file(src)
    src.write_bytes(data + extra)
    rc, out, err = run_ckptd("convert", src, "--to", "bin")
    assert_one_line_error(rc, err, src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_safetensors_header_with_hole_is_refused(tmp_path, run_ckptd):
    import json

    src = tmp_path / "model.safetensors"
    header = json.dumps(
        {"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    ).encode()
    src.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    rc, out, err = run_ckptd("convert", src, "--to", "bin")
    assert_one_line_error(rc, err, src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_torch_zip_is_refused(tmp_path, run_ckptd, fraction):
    src = tmp_path / "pytorch_model.bin"
    torch.save({"a": torch.randn(64, 64), "b": torch.randn(10)}, src)
    data = src.read_bytes()
    src.write_bytes(data[: int(len(data) * fraction)])
    rc, out, err = run_ckptd("convert", src, "--to", "safetensors")
    assert_one_line_error(rc, err, src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pytorch_model.bin"]
