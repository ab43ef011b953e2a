"""Peak RSS of `ckptd convert` does not grow with the checkpoint size (issue 6).

Builds a 64 MiB and a 512 MiB safetensors file (transformer-shaped F32 matrices, streamed to disk in pieces so
the test itself stays small), converts each with the real binary to .bin and back, with verification on and
with a bf16 cast, and reads each run's peak RSS from /usr/bin/time. The larger conversion must stay within a
few MiB of the smaller one and every run under 64 MiB.
"""

import json
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

MIB = 1 << 20
SIZES_MIB = (64, 512)
RSS_LIMIT_MIB = 64
GROWTH_LIMIT_MIB = 6
ROWS, COLS = 1024, 4096  # one 16 MiB F32 matrix, like an MLP projection


def write_safetensors(path, total_mib):
    """A safetensors file of 16 MiB F32 matrices plus small vectors, written chunk by chunk."""
    count = total_mib // 16
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in range(count)] + [
        f"model.layers.{i}.input_layernorm.weight" for i in range(count)
    ]
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    sizes = {}
    for name in names:
        shape = [ROWS, COLS] if "proj" in name else [COLS]
        nbytes = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        sizes[name] = nbytes
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in names:
            f.write(rng.standard_normal(sizes[name] // 4, dtype=np.float32).tobytes())
    return offset


def peak_rss_mib(binary, args):
    """Runs the binary under /usr/bin/time and returns (returncode, stderr, its peak RSS in MiB).

    Not os.wait4 on a child of this process: a child forked from pytest (torch loaded) inherits the parent's
    RSS high-water mark across exec, so ru_maxrss would report pytest's size, not ckptd's.
    """
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "ckptd-maxrss-kb=%M", str(binary), *[str(a) for a in args]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        timeout=600,
    )
    lines = proc.stderr.splitlines()
    marks = [line for line in lines if line.startswith("ckptd-maxrss-kb=")]
    assert marks, proc.stderr
    rest = "\n".join(line for line in lines if not line.startswith("ckptd-maxrss-kb="))
    return proc.returncode, rest, int(marks[-1].split("=", 1)[1]) / 1024


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("memflat")
    made = {}
    for size in SIZES_MIB:
        folder = root / f"src-{size}"
        folder.mkdir()
        data = write_safetensors(folder / "model.safetensors", size)
        made[size] = (folder, data)
    return root, made


ROUTES = [
    pytest.param(["--to", "bin"], id="st->bin verify"),
    pytest.param(["--to", "bin", "--dtype", "bf16"], id="st->bin bf16 verify"),
    pytest.param(["--to", "bin", "--max-shard-size", "100MB"], id="st->sharded bin verify"),
    pytest.param(None, id="bin->st verify"),
]


@pytest.mark.parametrize("route", ROUTES)
def test_peak_rss_flat(ckptd_bin, sources, route):
    if shutil.which("time", path="/usr/bin") is None:
        pytest.fail("/usr/bin/time is missing (apt-get install time): it measures the peak RSS")
    root, made = sources
    peaks = {}
    for size in SIZES_MIB:
        folder, data = made[size]
        out = root / f"out-{size}-{len(os.listdir(root))}"
        if route is None:
            # The reverse direction reads a .bin that ckptd itself wrote from the safetensors source.
            binary_in = root / f"bin-{size}"
            if not binary_in.exists():
                code, err, _ = peak_rss_mib(ckptd_bin, ["convert", folder, "--to", "bin", "--out", binary_in])
                assert code == 0, err
            code, err, rss = peak_rss_mib(ckptd_bin, ["convert", binary_in, "--to", "safetensors", "--out", out])
            written = [out / "model.safetensors"]
        else:
            code, err, rss = peak_rss_mib(ckptd_bin, ["convert", folder, *route, "--out", out])
            written = sorted(out.glob("pytorch_model*.bin"))
            if "--max-shard-size" in route and size > 100:
                assert len(written) > 1 and (out / "pytorch_model.bin.index.json").exists(), written
        assert code == 0, err
        assert sum(p.stat().st_size for p in written) >= data // (2 if "bf16" in (route or []) else 1)
        peaks[size] = rss
    small, large = peaks[SIZES_MIB[0]], peaks[SIZES_MIB[-1]]
    assert large < RSS_LIMIT_MIB, f"peak RSS {large:.1f} MiB for {SIZES_MIB[-1]} MiB (limit {RSS_LIMIT_MIB})"
    assert large - small < GROWTH_LIMIT_MIB, (
        f"peak RSS grew from {small:.1f} MiB ({SIZES_MIB[0]} MiB input) to {large:.1f} MiB ({SIZES_MIB[-1]} MiB)"
    )
