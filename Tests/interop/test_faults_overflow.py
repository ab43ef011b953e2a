"""inotify queue overflow: the daemon frozen with SIGSTOP while more than max_queued_events (16,384 by default)
events pile up in a watched directory, plus new complete checkpoints; after SIGCONT the status counts an
overflow and a rescan, and every checkpoint is converted.
"""

import os
import signal
from pathlib import Path

from daemon_support import Daemon, converted, wait_for, write_safetensors_checkpoint

NOISE_FILES = 20_000


def queue_limit() -> int:
    try:
        return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    except (OSError, ValueError):
        return 16384


def test_overflow_leads_to_rescan_and_nothing_missed(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    daemon = Daemon(tmp_path / "etc")
    daemon.add_dropin("10-run.toml", root, fmt="bin", settle=1)
    daemon.start()
    names = [f"checkpoint-{i}" for i in (10, 20, 30, 40)]
    try:
        before = (daemon.status() or {}).get("inotify", {})
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            # Noise in the watched root: a create and a delete event per file (checkpoint-* names included, so
            # the daemon cannot filter the events away before they are queued).
            noise = root / "noise"
            assert NOISE_FILES * 2 > queue_limit()
            for i in range(NOISE_FILES):
                path = root / f"checkpoint-noise-{i}" if i % 2 else noise.with_name(f"noise-{i}")
                path.touch()
                path.unlink()
            for seed, name in enumerate(names):
                write_safetensors_checkpoint(root / name, nbytes=16 << 10, seed=seed)
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        for name in names:
            wait_for(
                lambda: converted(root, name),
                90,
                what=f"{name} converted after the overflow",
            )
        after = wait_for(
            lambda: (s := daemon.status()) and s["inotify"]["overflows"] >= 1 and s["inotify"],
            10,
            what="an overflow counted in the status",
        )
        assert after["rescans"] > before.get("rescans", 0), (before, after)
        assert "overflow" in daemon.log_text().lower(), daemon.log_text()[-2000:]
        assert daemon.alive()
    finally:
        daemon.stop()
    for name in names:
        assert (root / name / "pytorch_model.bin").exists()
