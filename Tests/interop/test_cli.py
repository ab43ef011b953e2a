"""The CLI defects of issue 10: several paths, inspect --json, --version; and --max-shard-size input errors."""

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from conftest import REPO
from interop_helpers import load_bin, load_st


def test_convert_several_paths_converts_every_one_it_can_and_reports_each_failure(tmp_path, run_ckptd):
    good = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        save_file({"w": torch.arange(6, dtype=torch.float32)}, folder / "model.safetensors")
        good.append(folder)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{notjson")
    missing = tmp_path / "missing"
    rc, out, err = run_ckptd("convert", good[0], broken, missing, good[1], "--to", "bin")
    assert rc == 1, (rc, out, err)
    lines = [line for line in err.splitlines() if line.strip() and "%" not in line]
    assert len(lines) == 2, lines
    assert lines[0].startswith("ckptd: ") and "broken/model.safetensors" in lines[0], lines
    assert lines[1].startswith("ckptd: ") and str(missing) in lines[1], lines
    for folder in good:
        assert torch.equal(load_bin(folder / "pytorch_model.bin")["w"], load_st(folder / "model.safetensors")["w"])
        assert str(folder) in out


def test_inspect_json_prints_empty_metadata_as_braces(tmp_path, run_ckptd):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.zeros(2)}, path)
    rc, out, err = run_ckptd("inspect", path, "--json")
    assert rc == 0, err
    assert '"metadata": {}' in out, out
    assert "{\n\n" not in out
    assert json.loads(out)["metadata"] == {}


def test_version_prints_the_one_version_constant(run_ckptd):
    source = (REPO / "Sources/CheckpointDaemon/Daemon/Daemon.swift").read_text()
    match = re.search(r'static let version = "([^"]+)"', source)
    assert match, "Daemon.version not found"
    rc, out, err = run_ckptd("--version")
    assert rc == 0, err
    assert out == match.group(1) + "\n"


def test_unparsable_max_shard_size_is_one_line_naming_the_flag(tmp_path, run_ckptd):
    folder = tmp_path / "c"
    folder.mkdir()
    save_file({"w": torch.zeros(2)}, folder / "model.safetensors")
    rc, out, err = run_ckptd("convert", folder, "--to", "bin", "--max-shard-size", "5XB")
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("ckptd: --max-shard-size: '5XB'"), lines
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors"]
