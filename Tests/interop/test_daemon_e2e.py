"""End-to-end tests of `ckptd run`: a real Trainer writes checkpoints into a watched directory while the
daemon converts them; restarts, reloads, rotation and SIGTERM in the middle of a conversion.

Binary: env CKPTD (default <repo>/.build/debug/ckptd). Run with
/root/.cache/ckptd/venv/bin/python -m pytest -q Tests/interop/test_daemon_e2e.py
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from daemon_support import Daemon, binary, clean_env, events, read_manifest, temporaries, wait_for  # noqa: E402


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, OSError):
                continue
            self.messages.append(data.decode("utf-8", "replace"))

    def lines(self):
        return [line for message in list(self.messages) for line in message.splitlines()]

    def close(self):
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


class NotifyDaemon(Daemon):
    """The support Daemon, started with a notify socket standing in for systemd: ready means READY=1."""

    def __init__(self, base: Path):
        super().__init__(base)
        self.notify = None

    def start(self, watchdog_usec=None):
        self.notify = NotifySocket(self.base / f"notify-{time.monotonic_ns()}.sock")
        env = clean_env({"NOTIFY_SOCKET": str(self.notify.path)})
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.spawn(env)
        wait_for(lambda: "READY=1" in self.notify.lines() or self.proc.poll() is not None, 30, what="READY=1")
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None:
            return None
        try:
            return super().stop(sig, timeout)
        finally:
            self.notify.close()


@pytest.fixture
def daemon(ckptd_bin, tmp_path):
    instance = NotifyDaemon(tmp_path / "etc")
    yield instance
    if instance.proc is not None:
        instance.stop(signal.SIGKILL)


def start_watching(daemon: NotifyDaemon, run: Path) -> Path:
    """Creates the watched directory `run`, adds its drop-in and starts the daemon."""
    run.mkdir()
    daemon.add_dropin("10-run.toml", run)
    daemon.start()
    return run


def write_checkpoint(folder: Path, tensors=None, marker=True, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    tensors = tensors or {
        "embed.weight": torch.randn(16, 8, generator=generator),
        "layer.bias": torch.randn(8, generator=generator),
    }
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    torch.save({"state": {}}, folder / "optimizer.pt")
    if marker:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": seed}))
    return tensors


def big_checkpoint(folder: Path, megabytes=384):
    """A checkpoint large enough that its conversion takes a moment."""
    count = 8
    rows = megabytes * (1 << 20) // 4 // count // 1024
    tensors = {f"layer{i}.weight": torch.full((rows, 1024), float(i)) for i in range(count)}
    write_checkpoint(folder, tensors)


def converted(root: Path, name: str):
    return (root / name / "pytorch_model.bin").exists() and "converted" in events(root, name)


def assert_same_tensors(folder: Path):
    from safetensors.torch import load_file

    source = load_file(str(folder / "model.safetensors"))
    output = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert set(source) == set(output)
    for name, tensor in source.items():
        assert torch.equal(tensor, output[name]), name


# ---------------------------------------------------------------------------------------------------


def test_real_trainer_run(daemon, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    run = tmp_path / "runs" / "bert"
    daemon.add_dropin("10-bert.toml", run)
    daemon.start(watchdog_usec=2_000_000)

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=32, num_labels=2,
    )
    model = BertForSequenceClassification(config)

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"input_ids": torch.randint(0, 64, (12,), generator=g), "labels": torch.tensor(i % 2)}

    args = TrainingArguments(
        output_dir=str(run), max_steps=8, per_device_train_batch_size=4, save_steps=2, save_total_limit=2,
        logging_steps=100, report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=Data()).train()

    survivors = sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint-"))
    assert survivors == ["checkpoint-6", "checkpoint-8"]
    for name in survivors:
        wait_for(lambda: converted(run, name), 60, what=f"{name} converted")

    from transformers import BertForSequenceClassification as Model

    inputs = torch.randint(0, 64, (3, 12), generator=torch.Generator().manual_seed(7))
    for name in survivors:
        folder = run / name
        bin_only = tmp_path / f"bin-{name}"
        bin_only.mkdir()
        shutil.copy(folder / "config.json", bin_only / "config.json")
        shutil.copy(folder / "pytorch_model.bin", bin_only / "pytorch_model.bin")
        source = Model.from_pretrained(str(folder)).eval()
        output = Model.from_pretrained(str(bin_only)).eval()
        with torch.no_grad():
            assert torch.equal(source(input_ids=inputs).logits, output(input_ids=inputs).logits)
        records = read_manifest(run, strict=False)
        record = [r for r in records if r["checkpoint"] == name and r["event"] == "converted"][-1]
        assert record["format"] == "bin"
        assert record["tensors"] > 0
        assert any(o["name"] == "pytorch_model.bin" for o in record["outputs"])
        assert (folder / "optimizer.pt").exists() and not (folder / "optimizer.safetensors").exists()

    def reported():
        status = daemon.status()
        if not status:
            return None
        dirs = [d for d in status["directories"] if d["path"] == str(run)]
        return dirs and dirs[0]["counts"].get("converted", 0) >= 2 and status

    status = wait_for(reported, 10, what="status counts")
    assert status["state"] == "running" and status["pid"] == daemon.proc.pid

    code = subprocess.run(
        [str(binary()), "status", "--status-file", str(daemon.status_file), "--json"],
        capture_output=True, text=True, timeout=30,
    )
    assert code.returncode == 0, code.stderr
    assert json.loads(code.stdout)["directories"][0]["path"] == str(run)

    lines = daemon.notify.lines()
    assert "READY=1" in lines
    assert any(line.startswith("STATUS=") for line in lines)
    wait_for(lambda: "WATCHDOG=1" in daemon.notify.lines(), 5, what="WATCHDOG=1")
    assert daemon.stop() == 0
    assert "STOPPING=1" in daemon.notify.lines()


def test_twenty_checkpoints_at_once(daemon, tmp_path):
    run = start_watching(daemon, tmp_path / "run20")
    for step in range(1, 21):
        write_checkpoint(run / f"checkpoint-{step}", seed=step)
    for step in range(1, 21):
        wait_for(lambda: converted(run, f"checkpoint-{step}"), 120, what=f"checkpoint-{step}")
    for step in (1, 20):
        assert_same_tensors(run / f"checkpoint-{step}")
    assert sum(1 for r in read_manifest(run, strict=False) if r["event"] == "converted") == 20
    assert temporaries(run) == []
    assert daemon.stop() == 0


def test_checkpoints_created_while_stopped(daemon, tmp_path):
    run = start_watching(daemon, tmp_path / "run")
    write_checkpoint(run / "checkpoint-1", seed=1)
    wait_for(lambda: converted(run, "checkpoint-1"), 60, what="checkpoint-1")
    assert daemon.stop() == 0

    write_checkpoint(run / "checkpoint-2", seed=2)
    write_checkpoint(run / "checkpoint-3", seed=3)
    stale = run / "checkpoint-2" / ".ckptd-tmp.pytorch_model.bin.dead"
    stale.write_bytes(b"half written")
    daemon.start()
    for name in ("checkpoint-2", "checkpoint-3"):
        wait_for(lambda: converted(run, name), 60, what=name)
        assert_same_tensors(run / name)
    assert not stale.exists()
    assert events(run, "checkpoint-1") == ["converted"], "a converted checkpoint is not redone"
    assert daemon.stop() == 0


def test_dropin_added_while_running(daemon, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    daemon.add_dropin("10-a.toml", first)
    daemon.start()
    write_checkpoint(second / "checkpoint-5", seed=5)
    daemon.add_dropin("20-b.toml", second)
    wait_for(lambda: converted(second, "checkpoint-5"), 60, what="second directory picked up")
    wait_for(lambda: "RELOADING=1" in daemon.notify.lines(), 5, what="RELOADING=1")
    (daemon.dropins / "30-broken.toml").write_text('path = "relative"\nformat = "nope"\n')
    write_checkpoint(first / "checkpoint-1", seed=1)
    wait_for(lambda: converted(first, "checkpoint-1"), 60, what="others keep working")
    status = wait_for(lambda: (s := daemon.status()) and s.get("problems") and s, 10, what="problem reported")
    assert any("30-broken.toml" in p["file"] for p in status["problems"])
    assert daemon.stop() == 0


def test_directory_removed_and_recreated(daemon, tmp_path):
    run = tmp_path / "outer" / "run"
    daemon.add_dropin("10-run.toml", run)
    daemon.start()
    status = wait_for(lambda: daemon.status(), 10, what="status")
    assert status["directories"][0]["state"] == "missing"
    write_checkpoint(run / "checkpoint-1", seed=1)
    wait_for(lambda: converted(run, "checkpoint-1"), 60, what="directory that appeared later")
    shutil.rmtree(run)
    time.sleep(0.5)
    run.mkdir()
    write_checkpoint(run / "checkpoint-2", seed=2)
    wait_for(lambda: converted(run, "checkpoint-2"), 60, what="directory re-created")
    assert_same_tensors(run / "checkpoint-2")
    assert daemon.stop() == 0


def wait_active(daemon, name, timeout=60):
    def active():
        status = daemon.status()
        return status and any(a["checkpoint"] == name for a in status.get("active", []))

    wait_for(active, timeout, interval=0.02, what=f"{name} being converted")


def test_checkpoint_deleted_mid_conversion(daemon, tmp_path):
    run = start_watching(daemon, tmp_path / "run")
    big_checkpoint(run / "checkpoint-1")
    wait_active(daemon, "checkpoint-1")
    # Like the Trainer's rotation (ignore_errors=True); the daemon may create a temporary meanwhile.
    wait_for(lambda: shutil.rmtree(run / "checkpoint-1", ignore_errors=True) or not (run / "checkpoint-1").exists(),
             10, what="checkpoint-1 removed")
    wait_for(lambda: "vanished" in events(run, "checkpoint-1"), 60, what="vanished recorded")
    assert temporaries(run) == []
    write_checkpoint(run / "checkpoint-2", seed=2)
    wait_for(lambda: converted(run, "checkpoint-2"), 60, what="daemon goes on")
    assert daemon.stop() == 0


def test_sigterm_mid_conversion(daemon, tmp_path):
    run = start_watching(daemon, tmp_path / "run")
    big_checkpoint(run / "checkpoint-1")
    wait_active(daemon, "checkpoint-1")
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    assert temporaries(run) == []
    assert not (run / "checkpoint-1" / "pytorch_model.bin").exists()
    assert "converted" not in events(run, "checkpoint-1")
    daemon.start()
    wait_for(lambda: converted(run, "checkpoint-1"), 120, what="redone after restart")
    assert daemon.stop() == 0


def thread_wakeups(pid: int) -> dict:
    """tid -> voluntary context switches, for ckptd's own threads: libdispatch's manager thread (asleep in
    epoll_wait; its workqueue monitor is a 1 Hz timer in every Swift-concurrency process on Linux) is left out."""
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                if "epoll_wait" in f.read():
                    continue
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        counts[tid] = int(line.split(":", 1)[1])
        except (OSError, ValueError):
            pass
    return counts


@pytest.mark.parametrize("watchdog_usec", [None, 3_000_000])
def test_idle_daemon_wakes_only_for_the_watchdog(daemon, tmp_path, watchdog_usec):
    """No tick and no polling: an idle daemon's threads sleep until an input comes, or the watchdog is due
    (every WatchdogSec / 2). Measured from voluntary_ctxt_switches over 6 s."""
    run = tmp_path / "idle"
    run.mkdir()
    (tmp_path / "missing-parent").mkdir()
    daemon.add_dropin("10-run.toml", run)
    daemon.add_dropin("20-missing.toml", tmp_path / "missing-parent" / "not-yet" / "run")
    daemon.start(watchdog_usec=watchdog_usec)
    time.sleep(7)  # start-up's helper threads retire after a few idle seconds
    first = thread_wakeups(daemon.pid)
    last = dict(first)
    for _ in range(12):
        time.sleep(0.5)
        last.update(thread_wakeups(daemon.pid))
    woken = sum(count - first.get(tid, 0) for tid, count in last.items())
    # Without a watchdog: nothing. With one: a ping every WatchdogSec / 2 (4 or 5 in 6 s at 1.5 s), each
    # waking the thread the clock's sleep resumes on and the actor's (about 4 context switches in all).
    pings = 0 if watchdog_usec is None else int(6 / (watchdog_usec / 2e6)) + 1
    allowed = 5 * pings
    assert woken <= allowed, (woken, first, last)
    assert daemon.stop() == 0
