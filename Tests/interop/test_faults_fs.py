"""File-system faults under the running daemon: a checkpoint deleted during its conversion (rotation), the output
directory deleted and recreated, permission denied on a weight file (the daemon runs as `nobody` through
setpriv: root reads everything), and broken drop-ins next to a working one.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from daemon_support import (
    Daemon,
    converted,
    events,
    last_record,
    pid_alive,
    read_manifest,
    run,
    start_daemon,
    temporaries,
    wait_for,
    write_safetensors_checkpoint,
)


def remove_tree(path: Path):
    """rmtree that copes with files appearing while it runs (the daemon writing its temporary)."""
    for _ in range(50):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
    shutil.rmtree(path)


def test_checkpoint_deleted_during_conversion(tmp_path):
    root = tmp_path / "run"
    big = root / "checkpoint-100"
    write_safetensors_checkpoint(big, nbytes=160 << 20)
    daemon = start_daemon(tmp_path / "etc", root)
    try:
        wait_for(
            lambda: any(a["checkpoint"] == big.name for a in (daemon.status() or {}).get("active", []))
            or temporaries(big),
            60,
            0.02,
            what="the conversion of checkpoint-100 to start",
        )
        remove_tree(big)
        record = wait_for(lambda: last_record(root, big.name), 60, what="a manifest record for checkpoint-100")
        assert record["event"] == "vanished", record
        assert not big.exists() and not temporaries(root)
        assert daemon.alive()
        entry = wait_for(lambda: daemon.directory(root), 10, what="the status entry")
        wait_for(lambda: (daemon.directory(root) or {}).get("counts", {}).get("vanished", 0) >= 1, 10,
                 what="vanished counted in the status")
        assert not any(p["name"] == big.name for p in entry.get("pending", []))
        # The daemon goes on.
        write_safetensors_checkpoint(root / "checkpoint-200", nbytes=64 << 10)
        wait_for(lambda: converted(root, "checkpoint-200"), 60, what="checkpoint-200 converted")
    finally:
        daemon.stop()
    assert sorted(os.listdir(root)) == [".ckptd-manifest.jsonl", "checkpoint-200"]


def test_output_directory_deleted_and_recreated(tmp_path):
    root = tmp_path / "run"
    write_safetensors_checkpoint(root / "checkpoint-1", nbytes=32 << 10)
    daemon = start_daemon(tmp_path / "etc", root)
    try:
        wait_for(lambda: converted(root, "checkpoint-1"), 60, what="checkpoint-1 converted")
        shutil.rmtree(root)
        wait_for(lambda: (daemon.directory(root) or {}).get("state") == "missing", 20, what="state missing")
        root.mkdir()
        write_safetensors_checkpoint(root / "checkpoint-2", nbytes=32 << 10, seed=2)
        wait_for(lambda: converted(root, "checkpoint-2"), 60, what="checkpoint-2 converted in the new directory")
        assert (daemon.directory(root) or {}).get("state") == "watching"
        write_safetensors_checkpoint(root / "checkpoint-3", nbytes=32 << 10, seed=3)
        wait_for(lambda: converted(root, "checkpoint-3"), 60, what="checkpoint-3 converted")
        assert daemon.alive()
    finally:
        daemon.stop()
    assert (root / "checkpoint-3" / "pytorch_model.bin").exists()


@pytest.fixture
def nobody_base():
    """A folder `nobody` owns, outside pytest's root-only tmp tree."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the daemon as nobody")
    base = Path(tempfile.mkdtemp(prefix="ckptd-faults-perm-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def chown_tree(path: Path, uid: int, gid: int):
    os.chown(path, uid, gid)
    for p in path.rglob("*"):
        os.chown(p, uid, gid, follow_symlinks=False)


def test_permission_denied_on_a_weight_file(nobody_base):
    import pwd

    nobody = pwd.getpwnam("nobody")
    root = nobody_base / "run"
    locked = root / "checkpoint-1"
    write_safetensors_checkpoint(locked, nbytes=32 << 10)
    write_safetensors_checkpoint(root / "checkpoint-2", nbytes=32 << 10, seed=2)
    closed = root / "checkpoint-3"
    write_safetensors_checkpoint(closed, nbytes=32 << 10, seed=3)
    daemon = Daemon(nobody_base / "etc")
    daemon.add_dropin("10-run.toml", root, fmt="bin", settle=1)
    chown_tree(nobody_base, nobody.pw_uid, nobody.pw_gid)
    os.chmod(locked / "model.safetensors", 0)
    os.chmod(closed, 0)  # a whole checkpoint folder it cannot list
    prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    daemon.start(prefix=prefix)
    try:
        record = wait_for(
            lambda: (r := last_record(root, "checkpoint-1")) and r["event"] == "failed" and r,
            60,
            what="a failed record for the unreadable weight file",
        )
        assert "Permission denied" in record["error"] and "model.safetensors" in record["error"], record
        assert record["retryable"] is False, record
        wait_for(lambda: converted(root, "checkpoint-2"), 60, what="the readable checkpoint converted")
        wait_for(
            lambda: "Permission denied" in ((daemon.directory(root) or {}).get("last_error") or "")
            or any("Permission denied" in p["reason"] for p in (daemon.directory(root) or {}).get("pending", [])),
            10,
            what="the failure shown in the status",
        )
        code, out, err = run(["status", "--status-file", daemon.status_file])
        assert code == 0 and "Permission denied" in out, out + err
        assert daemon.alive() and pid_alive(daemon.pid)
        assert not (locked / "pytorch_model.bin").exists() and not temporaries(root)
        # The unreadable folder waits, with the reason in the status (not silently dropped).
        wait_for(
            lambda: any(
                p["name"] == closed.name and "Permission denied" in p["reason"]
                for p in (daemon.directory(root) or {}).get("pending", [])
            ),
            10,
            what="the unreadable checkpoint folder pending with its reason",
        )
        os.chmod(closed, 0o755)
        wait_for(lambda: converted(root, closed.name), 60, what="checkpoint-3 converted once readable")
        # Not retried while nothing changes ...
        time.sleep(3)
        assert events(root, "checkpoint-1") == ["failed"], events(root, "checkpoint-1")
        # ... retried once the file changes (readable again, touched).
        os.chmod(locked / "model.safetensors", 0o644)
        os.utime(locked / "model.safetensors")
        wait_for(lambda: converted(root, "checkpoint-1"), 60, what="checkpoint-1 converted once readable")
    finally:
        daemon.stop()


def test_broken_dropins_are_reported_and_others_keep_converting(tmp_path):
    good = tmp_path / "good"
    daemon = Daemon(tmp_path / "etc")
    daemon.add_dropin("10-good.toml", good, fmt="bin", settle=1)
    (daemon.dropins / "20-bad-toml.toml").write_text('path = "/tmp/x\nformat = bin = ]\n')
    (daemon.dropins / "30-no-path.toml").write_text('format = "bin"\n')
    good.mkdir()
    code, out, err = run(["config", "check", "--config", daemon.config])
    assert code == 1, (code, out, err)
    assert "20-bad-toml.toml" in err and "30-no-path.toml" in err, err
    assert str(good) in out, out

    daemon.start()
    try:
        problems = wait_for(lambda: (daemon.status() or {}).get("problems"), 10, what="problems in the status")
        files = " ".join(p["file"] for p in problems)
        assert "20-bad-toml.toml" in files and "30-no-path.toml" in files, problems
        code, out, err = run(["status", "--status-file", daemon.status_file, "--json"])
        assert code == 0, err
        assert "30-no-path.toml" in out
        write_safetensors_checkpoint(good / "checkpoint-1", nbytes=32 << 10)
        wait_for(lambda: converted(good, "checkpoint-1"), 60, what="the good directory keeps converting")
        # Broken while running: a good drop-in turns bad; the other directory keeps working.
        other = tmp_path / "other"
        other.mkdir()
        daemon.add_dropin("40-other.toml", other, fmt="safetensors", settle=1)
        (daemon.dropins / "10-good.toml").write_text("path = 17\n")
        wait_for(
            lambda: any("10-good.toml" in p["file"] for p in (daemon.status() or {}).get("problems", [])),
            20,
            what="the broken drop-in reported after the reload",
        )
        import torch

        folder = other / "checkpoint-5"
        folder.mkdir()
        torch.save({"w": torch.arange(6.0)}, folder / "pytorch_model.bin")
        (folder / "trainer_state.json").write_text("{}")
        wait_for(lambda: converted(other, "checkpoint-5"), 60, what="the other directory converting")
        assert daemon.alive()
    finally:
        daemon.stop()


def test_output_directory_deleted_during_a_conversion(tmp_path):
    root = tmp_path / "run"
    write_safetensors_checkpoint(root / "checkpoint-1", nbytes=160 << 20)
    daemon = start_daemon(tmp_path / "etc", root)
    try:
        wait_for(lambda: temporaries(root), 60, 0.02, what="the conversion of checkpoint-1 to start writing")
        remove_tree(root)
        assert not root.exists()
        time.sleep(0.5)
        root.mkdir()
        write_safetensors_checkpoint(root / "checkpoint-2", nbytes=16 << 10, seed=2)
        wait_for(lambda: converted(root, "checkpoint-2"), 60, what="checkpoint-2 converted in the recreated directory")
        assert daemon.alive()
        assert not temporaries(tmp_path)
        assert "checkpoint-1" not in os.listdir(root)
        assert all(r["event"] in ("vanished", "converted") for r in read_manifest(root))
    finally:
        daemon.stop()
