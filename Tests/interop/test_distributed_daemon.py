"""The daemon consolidates a real DeepSpeed Trainer checkpoint end to end (issue 12, `consolidate` drop-in key): the
cached ZeRO-3 Trainer checkpoint of test_distributed.py (no model file of its own) is copied into a watched directory
in the order the Trainer lands it, with `latest` before the last rank's file; the status file says what it waits
for; the manifest record says `source_kind = deepspeed`; the output equals zero_to_fp32.py bit for bit."""

import json
import shutil
from pathlib import Path

import pytest

from daemon_support import Daemon, converted, last_record, run, wait_for
from interop_helpers import assert_same_dict, load_bin
from test_distributed import expected, fixtures, source_folder  # noqa: F401

CASE = "zero3_fp32_frozen"


def land_like_the_trainer(src: Path, dst: Path, hold_back: str):
    """Copies a Trainer checkpoint in the Trainer's order (reference/distributed-checkpoints.md), each file
    written under its final name; `hold_back` (a rank file) is left out; returns its source path."""
    dst.mkdir()
    tag = (src / "latest").read_text().strip()
    for name in ("config.json", "generation_config.json"):
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)
    (dst / tag).mkdir()
    held = None
    for path in sorted((src / tag).iterdir()):
        if path.name == hold_back:
            held = path
            continue
        shutil.copyfile(path, dst / tag / path.name)
    for name in sorted(p.name for p in src.iterdir() if p.is_file()):
        if name not in ("config.json", "generation_config.json", "trainer_state.json"):
            shutil.copyfile(src / name, dst / name)
    shutil.copyfile(src / "trainer_state.json", dst / "trainer_state.json")
    assert held is not None, f"{hold_back} not in {src / tag}"
    return held


def pending_reason(daemon: Daemon, root: Path, name: str):
    entry = daemon.directory(root) or {}
    for item in entry.get("pending", []):
        if item.get("name") == name:
            return item.get("reason")
    return None


@pytest.mark.parametrize("fmt", ["bin"])
def test_daemon_consolidates_a_deepspeed_trainer_checkpoint(fixtures, tmp_path, fmt):
    src = source_folder(fixtures, CASE)
    assert not any(p.name.startswith(("model", "pytorch_model")) for p in src.iterdir()), "expected no weights"
    root = tmp_path / "run"
    root.mkdir()
    daemon = Daemon(tmp_path / "d")
    daemon.add_dropin("10-run.toml", root, fmt=fmt, extra='consolidate = "auto"\n')
    daemon.add_dropin("20-bad.toml", tmp_path / "other", extra='consolidate = "sometimes"\n')
    rc, out, err = run(["config", "check", "--config", str(daemon.config)])
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1 and len(lines) == 1, (rc, err)
    assert "20-bad.toml" in lines[0] and 'consolidate must be "auto", "always" or "never"' in lines[0], lines
    assert "consolidate = auto" in out, out
    (daemon.dropins / "20-bad.toml").unlink()

    daemon.start()
    try:
        folder = root / "checkpoint-2"
        held = land_like_the_trainer(src, folder, hold_back="zero_pp_rank_1_mp_rank_00_optim_states.pt")
        reason = wait_for(
            lambda: (r := pending_reason(daemon, root, "checkpoint-2")) and "every rank's optimizer file" in r and r,
            60, what="the status file to say it waits for the last rank's file")
        assert "global_step" in reason, reason
        assert last_record(root, "checkpoint-2") is None
        shutil.copyfile(held, folder / held.parent.name / held.name)
        wait_for(lambda: converted(root, "checkpoint-2"), 120, what="the manifest record")
    finally:
        daemon.stop()
    record = last_record(root, "checkpoint-2")
    assert record["source_kind"] == "deepspeed", record
    assert [o["name"] for o in record["outputs"]] == ["pytorch_model.bin"], record
    assert record["verified"] is True
    got = load_bin(folder / "pytorch_model.bin")
    assert_same_dict(got, expected(fixtures, CASE), f"{CASE} via the daemon: ")
    # Rank files and the Trainer's own files are untouched.
    for path in (src / "global_step2").iterdir():
        assert (folder / "global_step2" / path.name).read_bytes() == path.read_bytes(), path.name
    status = json.loads(daemon.status_file.read_text())
    assert all(d.get("pending", []) == [] for d in status["directories"]), status


def test_daemon_consolidates_a_trainer_fsdp_checkpoint(fixtures, tmp_path):
    """Trainer + accelerate FSDP2 SHARDED_STATE_DICT (no weights, no config): the folder waits for
    pytorch_model_fsdp_0/.metadata (DCP renames it into place last), then becomes pytorch_model.bin with
    source_kind dcp, equal to dcp_to_torch_save."""
    case = "trainer_fsdp2"
    src = source_folder(fixtures, case)
    root = tmp_path / "run"
    root.mkdir()
    daemon = Daemon(tmp_path / "d")
    daemon.add_dropin("10-run.toml", root)
    daemon.start()
    try:
        folder = root / "checkpoint-2"
        shutil.copytree(src, folder, ignore=lambda d, names: [".metadata"] if d.endswith("pytorch_model_fsdp_0") else [])
        reason = wait_for(
            lambda: (r := pending_reason(daemon, root, "checkpoint-2")) and ".metadata" in r and r,
            60, what="the status file to say it waits for .metadata")
        assert "pytorch_model_fsdp_0" in reason, reason
        assert last_record(root, "checkpoint-2") is None
        staged = folder / "pytorch_model_fsdp_0" / ".metadata.tmp"
        shutil.copyfile(src / "pytorch_model_fsdp_0" / ".metadata", staged)
        staged.rename(folder / "pytorch_model_fsdp_0" / ".metadata")
        wait_for(lambda: converted(root, "checkpoint-2"), 120, what="the manifest record")
    finally:
        daemon.stop()
    record = last_record(root, "checkpoint-2")
    assert record["source_kind"] == "dcp", record
    assert [o["name"] for o in record["outputs"]] == ["pytorch_model.bin"], record
    assert_same_dict(load_bin(folder / "pytorch_model.bin"), expected(fixtures, case), f"{case} via the daemon: ")
