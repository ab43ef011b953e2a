"""Helpers for the daemon suites (test_faults*.py, test_daemon_e2e.py): the real `ckptd run` daemon with a temp
config, checkpoint fixtures written by the real libraries, manifest reading, file fingerprints.

`Daemon.start` runs it with NOTIFY_SOCKET unset; readiness is read from its status file (state "running", our pid).
"""

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
TEMP_MARK = ".ckptd-tmp."
MANIFEST = ".ckptd-manifest.jsonl"


def binary() -> Path:
    """The ckptd executable under test (env CKPTD, default <repo>/.build/debug/ckptd)."""
    return Path(os.environ.get("CKPTD") or REPO / ".build" / "debug" / "ckptd").resolve()


def clean_env(extra=None) -> dict:
    env = dict(os.environ)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CKPTD_CONFIG"):
        env.pop(key, None)
    if extra:
        env.update(extra)
    return env


def wait_for(predicate, timeout=60.0, interval=0.1, what="condition"):
    """Polls `predicate` until it returns something truthy; fails with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run(args, timeout=120, env=None):
    """Runs `ckptd ARGS...`; returns (code, stdout, stderr)."""
    proc = subprocess.run(
        [str(binary()), *[str(a) for a in args]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env=clean_env(env),
    )
    return proc.returncode, proc.stdout, proc.stderr


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(folder: Path, names) -> dict:
    """name -> sha256 for the given files of a folder."""
    return {name: sha256(folder / name) for name in names}


def temporaries(root: Path):
    """Every ckptd temporary under `root` (recursively)."""
    return sorted(p for p in root.rglob("*") if p.name.startswith(TEMP_MARK))


def read_manifest(root: Path, name=MANIFEST, strict=True, tolerate=()):
    """The manifest's records. strict: every line but a torn last one (and the lines in `tolerate`, torn tails
    the test planted itself) must be JSON (asserted)."""
    path = root / name
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    records = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            last = index == len(lines) - 1  # no newline after it: a torn tail
            # A crash mid-append leaves `{...` without its end; ckptd starts the next record on a new line.
            torn = line.startswith(b"{") and not line.rstrip().endswith(b"}")
            if strict and not last and not torn and bytes(line) not in tolerate:
                raise AssertionError(f"{path}: line {index + 1} is not JSON: {line[:120]!r}")
    return records


def events(root: Path, checkpoint: str):
    return [r["event"] for r in read_manifest(root) if r.get("checkpoint") == checkpoint]


def last_record(root: Path, checkpoint: str):
    found = [r for r in read_manifest(root) if r.get("checkpoint") == checkpoint]
    return found[-1] if found else None


def converted(root: Path, name: str) -> bool:
    """The checkpoint's last manifest record is `converted`."""
    record = last_record(root, name)
    return bool(record) and record["event"] == "converted"


def tensors_of_size(nbytes: int, seed: int = 0, dtype=torch.float32) -> dict:
    """A few tensors with about `nbytes` of data in total, plus a tied pair and a small bias."""
    generator = torch.Generator().manual_seed(seed)
    item = torch.empty((), dtype=dtype).element_size()
    count = max(1, min(4, nbytes // 65536))
    rows = max(1, nbytes // item // count // 256)
    out = {f"layer{i}.weight": torch.randn(rows, 256, generator=generator).to(dtype) for i in range(count)}
    out["head.bias"] = torch.randn(7, generator=generator).to(dtype)
    return out


def write_safetensors_checkpoint(folder: Path, nbytes=65536, seed=0, marker=True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = tensors_of_size(nbytes, seed)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "optimizer.pt").write_bytes(b"not weights")
    if marker:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": seed}))
    return tensors


def write_bin_checkpoint(folder: Path, nbytes=65536, seed=0, marker=True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = tensors_of_size(nbytes, seed)
    state = dict(tensors)
    state["tied.weight"] = state["layer0.weight"]  # shared storage
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "optimizer.pt").write_bytes(b"not weights")
    if marker:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": seed}))
    return state


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Daemon:
    """A temp main config + drop-in folder, and the `ckptd run` process (log in base/daemon.log)."""

    def __init__(self, base: Path, workers=1):
        self.base = base
        self.dropins = base / "watch.d"
        self.dropins.mkdir(parents=True, exist_ok=True)
        self.status_file = base / "status.json"
        self.config = base / "ckptd.toml"
        self.config.write_text(
            f'status_file = "{self.status_file}"\n'
            f'dropin_dirs = ["{self.dropins}"]\n'
            f"workers = {workers}\n"
            'log_level = "debug"\n'
        )
        self.log = base / "daemon.log"
        self.proc = None
        self._logfile = None

    def add_dropin(self, name, root: Path, fmt="bin", settle=1, marker="trainer_state.json", extra=""):
        text = (
            f'path = "{root}"\nformat = "{fmt}"\ndtype = "keep"\npattern = "checkpoint-*"\n'
            f'ready_marker = "{marker}"\nsettle_seconds = {settle}\n{extra}'
        )
        tmp = self.dropins / f".{name}.tmp"
        tmp.write_text(text)
        tmp.rename(self.dropins / name)

    def spawn(self, env, prefix=()):
        """Starts `ckptd run` (behind `prefix`, e.g. a setpriv command line) with `env`, log appended to self.log."""
        self._logfile = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*prefix, str(binary()), "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=self._logfile,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def start(self, timeout=30, prefix=()):
        """Starts `ckptd run` (behind `prefix`, e.g. a setpriv command line) and waits until it runs."""
        self.spawn(clean_env(), prefix)
        pid = self.proc.pid

        def ready():
            if self.proc.poll() is not None:
                return True
            status = self.status()
            return status is not None and status.get("pid") == pid and status.get("state") == "running"

        wait_for(ready, timeout, what="the daemon's status file to say running")
        assert self.proc.poll() is None, f"daemon exited {self.proc.returncode}:\n{self.log_text()}"
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self):
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def directory(self, root: Path):
        status = self.status() or {}
        for entry in status.get("directories", []):
            if entry.get("path") == str(root):
                return entry
        return None

    def status_fresh(self, within=10.0) -> bool:
        """The status file belongs to this process and is current: replaced in the last `within` seconds, or,
        from a daemon without a watchdog (no `heartbeat_seconds`: an idle daemon does not rewrite an unchanged
        document), saying it runs while the process is alive; `ckptd status` must agree (exit 0)."""
        status = self.status()
        if not status or status.get("pid") != self.pid:
            return False
        if status.get("heartbeat_seconds") is None:
            code, _, _ = run(["status", "--status-file", self.status_file])
            return status.get("state") == "running" and self.alive() and code == 0
        return time.time() - self.status_file.stat().st_mtime < within

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self._logfile:
                self._logfile.close()
        self.proc = None
        return code


def start_daemon(base: Path, root: Path, name="10-run.toml", fmt="bin", settle=1) -> Daemon:
    """A started Daemon (config under `base`) watching `root` through one drop-in."""
    daemon = Daemon(base)
    daemon.add_dropin(name, root, fmt=fmt, settle=settle)
    return daemon.start()


def converted_names(fmt: str, source: str) -> str:
    """The output name for a source weight file."""
    if fmt == "bin":
        return {"model.safetensors": "pytorch_model.bin"}.get(source, source)
    return {"pytorch_model.bin": "model.safetensors"}.get(source, source)
