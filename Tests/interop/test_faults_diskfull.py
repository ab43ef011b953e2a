"""Disk full while writing: a watched output directory on an 8 MiB tmpfs, with a checkpoint too big for the
space left. The daemon records a retryable ENOSPC failure, removes its temporary, leaves the source intact and
keeps running; once a filler file is deleted it retries and converts. `ckptd convert` exits 1 with one line.

Needs root and mount(2) (skipped with the reason otherwise).
"""

import os
import subprocess
from pathlib import Path

import pytest

from daemon_support import (
    Daemon,
    converted,
    fingerprint,
    last_record,
    pid_alive,
    read_manifest,
    run,
    temporaries,
    wait_for,
    write_safetensors_checkpoint,
)

SOURCE_BYTES = 3 << 20


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("disk-full test needs root to mount a tmpfs")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(mount: Path, leave: int) -> Path:
    """A filler file taking all free space but `leave` bytes."""
    stats = os.statvfs(mount)
    free = stats.f_bavail * stats.f_frsize
    filler = mount / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler


def test_disk_full_daemon_retries_once_space_returns(small_disk, tmp_path):
    root = small_disk / "run"
    folder = root / "checkpoint-1"
    write_safetensors_checkpoint(folder, nbytes=SOURCE_BYTES)
    before = fingerprint(folder, ["model.safetensors"])
    filler = fill(small_disk, leave=1 << 20)

    daemon = Daemon(tmp_path / "etc")
    daemon.add_dropin("10-disk.toml", root, fmt="bin", settle=1)
    daemon.start()
    try:
        failed = wait_for(
            lambda: (r := last_record(root, "checkpoint-1")) and r["event"] == "failed" and r,
            60,
            what="a failed record for the full disk",
        )
        assert failed["retryable"] is True, failed
        assert "No space left on device" in failed["error"], failed
        assert "checkpoint-1" in failed["error"], failed
        assert "conversion failed" in daemon.log_text() and "No space left on device" in daemon.log_text()
        assert not temporaries(root), temporaries(root)
        assert not (folder / "pytorch_model.bin").exists()
        assert fingerprint(folder, before) == before
        # Alive and publishing; the status says why it waits and what went wrong.
        assert daemon.alive() and pid_alive(daemon.pid)
        wait_for(daemon.status_fresh, 10, what="a fresh status file")
        entry = wait_for(
            lambda: (e := daemon.directory(root)) and "No space left" in (e.get("last_error") or "") and e,
            10,
            what="last_error in the status",
        )
        assert entry["counts"].get("failed", 0) >= 1, entry
        wait_for(
            lambda: any("retrying" in p["reason"] for p in (daemon.directory(root) or {}).get("pending", [])),
            10,
            what="the pending retry shown in the status",
        )

        filler.unlink()
        wait_for(
            lambda: converted(root, "checkpoint-1"),
            90,
            what="the retried conversion once space returned",
        )
        assert daemon.alive()
    finally:
        daemon.stop()
    code, out, err = run(["verify", folder / "model.safetensors", folder / "pytorch_model.bin"])
    assert code == 0, out + err
    assert fingerprint(folder, before) == before
    assert not temporaries(root)
    events = [r["event"] for r in read_manifest(root)]
    assert events.count("failed") >= 1 and events[-1] == "converted", events


def test_disk_full_convert_exits_1_with_one_line(small_disk):
    folder = small_disk / "checkpoint-7"
    write_safetensors_checkpoint(folder, nbytes=SOURCE_BYTES)
    before = fingerprint(folder, ["model.safetensors"])
    filler = fill(small_disk, leave=1 << 20)
    code, out, err = run(["convert", folder, "--to", "bin"])
    # Off a terminal, progress lines ("<path>: 10% ...") may come first; the failure is one `ckptd:` line, last.
    lines = [line for line in err.splitlines() if line.strip() and "%" not in line.split(": ")[-1][:5]]
    assert code == 1, (code, out, err)
    assert len(lines) == 1 and err.splitlines()[-1] == lines[0], err
    assert lines[0].startswith("ckptd: ") and str(folder) in lines[0] and "No space left on device" in lines[0], err
    assert not temporaries(small_disk) and not (folder / "pytorch_model.bin").exists()
    assert fingerprint(folder, before) == before
    filler.unlink()
    code, out, err = run(["convert", folder, "--to", "bin"])
    assert code == 0, err
