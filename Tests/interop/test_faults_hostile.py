"""Hostile input end to end through the running daemon. Each hostile checkpoint is refused with one clear reason
naming the file, leaves no output, is recorded `failed` with retryable false, is not retried on rescan (SIGHUP)
or restart until its files change (touch: retried), and the daemon keeps running and converting the good ones.

Cases: a pytorch_model.bin whose pickle calls os.system (the marker file is never created), an index whose
weight_map points at "../evil.safetensors" or at "/etc/passwd", a weight file that is a symlink leading out of
the folder, and a symlink planted at the output name (the write must not follow it). A truncated safetensors
that never completes is never converted: it waits, with the reason shown in the status.
"""

import json
import os
import shutil
import signal
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from daemon_support import (
    Daemon,
    converted,
    events,
    last_record,
    read_manifest,
    sha256,
    temporaries,
    wait_for,
    write_safetensors_checkpoint,
)
from interop_helpers import literal_os_system_pickle, torch_style_zip


def finish(folder: Path):
    (folder / "trainer_state.json").write_text("{}")


def index_checkpoint(folder: Path, shard: str):
    folder.mkdir(parents=True)
    save_file({"a": torch.ones(4)}, str(folder / "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
    index = {
        "metadata": {"total_size": 32},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": shard},
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    finish(folder)


def build(tmp_path: Path, root_bin: Path, root_st: Path):
    """The hostile checkpoints: name -> (root, file whose change should trigger a retry, expected words)."""
    marker = tmp_path / "PWNED"
    cases = {}

    folder = root_st / "checkpoint-pickle"
    folder.mkdir(parents=True)
    torch_style_zip(folder / "pytorch_model.bin", literal_os_system_pickle(marker))
    finish(folder)
    cases["checkpoint-pickle"] = (root_st, folder / "pytorch_model.bin", ["pytorch_model.bin", "system"])

    save_file({"evil": torch.zeros(4)}, str(root_bin / "evil.safetensors"), metadata={"format": "pt"})
    index_checkpoint(root_bin / "checkpoint-dotdot", "../evil.safetensors")
    cases["checkpoint-dotdot"] = (
        root_bin,
        root_bin / "checkpoint-dotdot" / "model.safetensors.index.json",
        ["model.safetensors.index.json", "../evil.safetensors"],
    )
    index_checkpoint(root_bin / "checkpoint-abs", "/etc/passwd")
    cases["checkpoint-abs"] = (
        root_bin,
        root_bin / "checkpoint-abs" / "model.safetensors.index.json",
        ["model.safetensors.index.json", "/etc/passwd"],
    )

    outside = tmp_path / "outside"
    outside.mkdir()
    save_file({"x": torch.ones(3)}, str(outside / "model.safetensors"), metadata={"format": "pt"})
    folder = root_bin / "checkpoint-symlink"
    folder.mkdir()
    (folder / "model.safetensors").symlink_to(outside / "model.safetensors")
    finish(folder)
    cases["checkpoint-symlink"] = (root_bin, folder / "model.safetensors", ["model.safetensors", "symlink"])

    victim = outside / "victim.bin"
    victim.write_bytes(b"do not overwrite me")
    folder = root_bin / "checkpoint-planted"
    write_safetensors_checkpoint(folder, nbytes=8 << 10)
    (folder / "pytorch_model.bin").symlink_to(victim)
    cases["checkpoint-planted"] = (root_bin, folder / "model.safetensors", ["pytorch_model.bin"])
    return cases, marker, victim


def no_outputs(folder: Path, before: set):
    now = {p.name for p in folder.iterdir()}
    assert now == before, f"{folder}: left behind {sorted(now - before)}"


def test_hostile_checkpoints_through_the_daemon(tmp_path):
    root_bin = tmp_path / "to-bin"
    root_st = tmp_path / "to-st"
    root_bin.mkdir()
    root_st.mkdir()
    cases, marker, victim = build(tmp_path, root_bin, root_st)
    victim_sha = sha256(victim)
    contents = {name: {p.name for p in (root / name).iterdir()} for name, (root, _, _) in cases.items()}

    # Truncated and never completed: header intact, data cut short.
    truncated = root_bin / "checkpoint-truncated"
    write_safetensors_checkpoint(truncated, nbytes=64 << 10)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    old = time.time() - 60
    os.utime(truncated / "model.safetensors", (old, old))
    # A FIFO named like a weight file (opening it would block): nothing hangs, nothing is written.
    fifo = root_bin / "checkpoint-fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "model.safetensors")
    finish(fifo)
    # And good checkpoints beside them (converted after the FIFO one: the queue is in name order).
    write_safetensors_checkpoint(root_bin / "checkpoint-good", nbytes=16 << 10)

    daemon = Daemon(tmp_path / "etc")
    daemon.add_dropin("10-bin.toml", root_bin, fmt="bin", settle=1)
    daemon.add_dropin("20-st.toml", root_st, fmt="safetensors", settle=1)
    daemon.start()
    try:
        def all_failed():
            return all((r := last_record(root, name)) and r["event"] == "failed" for name, (root, _, _) in cases.items())

        try:
            wait_for(all_failed, 40, what="every hostile checkpoint recorded as failed")
        except AssertionError as error:
            state = {name: events(root, name) for name, (root, _, _) in cases.items()}
            raise AssertionError(f"{error}: {state}; status {daemon.status()}") from None
        wait_for(lambda: converted(root_bin, "checkpoint-good"), 60,
                 what="the good checkpoint converted")
        for name, (root, _, words) in cases.items():
            record = last_record(root, name)
            assert record["retryable"] is False, record
            error = record["error"]
            assert "\n" not in error and name in error, error
            for word in words:
                assert word in error, (word, error)
            no_outputs(root / name, contents[name])
            assert f"conversion failed: {error}" in daemon.log_text() or error in daemon.log_text()
        assert not marker.exists(), "the pickle's os.system ran"
        assert {p.name for p in fifo.iterdir()} == {"model.safetensors", "trainer_state.json"}
        assert sha256(victim) == victim_sha and (root_bin / "checkpoint-planted" / "pytorch_model.bin").is_symlink()
        assert not temporaries(root_bin) and not temporaries(root_st)

        # The truncated file waits with its reason; nothing is written for it.
        pending = wait_for(
            lambda: [
                p
                for p in (daemon.directory(root_bin) or {}).get("pending", [])
                if p["name"] == truncated.name and "model.safetensors" in p["reason"]
            ],
            20,
            what="the truncated checkpoint pending in the status, naming its incomplete file",
        )
        assert "model.safetensors" in pending[0]["reason"], pending
        assert not (truncated / "pytorch_model.bin").exists() and not events(root_bin, truncated.name)

        # Not retried on a rescan (SIGHUP reload) ...
        os.kill(daemon.pid, signal.SIGHUP)
        time.sleep(4)
        assert daemon.alive()
        for name, (root, _, _) in cases.items():
            assert events(root, name) == ["failed"], (name, events(root, name))
    finally:
        daemon.stop()

    # ... nor after a restart.
    daemon.start()
    try:
        time.sleep(4)
        for name, (root, _, _) in cases.items():
            assert events(root, name) == ["failed"], (name, events(root, name))
        # Touching the file: retried (and refused again). The symlink leading out is replaced by a real file
        # (what a person fixing it does; the link itself is not a weight file the daemon fingerprints): converted.
        for name, (root, changed, _) in cases.items():
            if changed.is_symlink() and name == "checkpoint-symlink":
                target = changed.resolve()
                changed.unlink()
                shutil.copyfile(target, changed)
            else:
                os.utime(changed)
        expected = {name: ["failed", "failed"] for name in cases}
        expected["checkpoint-symlink"] = ["failed", "converted"]
        try:
            wait_for(
                lambda: all(events(root, name) == expected[name] for name, (root, _, _) in cases.items()),
                40,
                what="every hostile checkpoint retried once after its file changed",
            )
        except AssertionError as error:
            state = {name: events(root, name) for name, (root, _, _) in cases.items()}
            raise AssertionError(f"{error}: {state}") from None
        assert daemon.alive()
        wait_for(daemon.status_fresh, 10, what="a fresh status")
    finally:
        daemon.stop()
    assert not marker.exists()
    assert sha256(victim) == victim_sha
    for name, (root, _, _) in cases.items():
        if name != "checkpoint-symlink":
            no_outputs(root / name, contents[name])
    records = read_manifest(root_bin) + read_manifest(root_st)
    print(f"\nhostile checkpoints through the daemon: {len(cases) + 2} ({len(records)} manifest records)")


def test_planted_symlinks_in_the_watched_directory(tmp_path):
    """A checkpoint folder that is a symlink leading elsewhere is not followed (nothing is written there); a
    manifest name planted as a symlink is not written through; the daemon keeps converting."""
    root = tmp_path / "run"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere" / "checkpoint-9"
    write_safetensors_checkpoint(elsewhere, nbytes=8 << 10)
    (root / "checkpoint-9").symlink_to(elsewhere)
    victim = tmp_path / "victim.txt"
    victim.write_text("not a manifest\n")
    victim_sha = sha256(victim)
    (root / ".ckptd-manifest.jsonl").symlink_to(victim)
    write_safetensors_checkpoint(root / "checkpoint-1", nbytes=8 << 10)
    daemon = Daemon(tmp_path / "etc")
    daemon.add_dropin("10-run.toml", root, fmt="bin", settle=1)
    daemon.start()
    try:
        wait_for(lambda: (root / "checkpoint-1" / "pytorch_model.bin").exists(), 60, what="checkpoint-1 converted")
        wait_for(lambda: "cannot append" in daemon.log_text(), 10, what="the manifest failure logged")
        time.sleep(2)
        assert daemon.alive()
        wait_for(daemon.status_fresh, 10, what="a fresh status")
    finally:
        daemon.stop()
    assert sha256(victim) == victim_sha, "the manifest was written through a planted symlink"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["model.safetensors", "optimizer.pt", "trainer_state.json"]
    assert not temporaries(root) and not temporaries(tmp_path / "elsewhere")
