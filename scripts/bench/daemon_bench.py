"""Daemon figures for `make bench`: start-up with 1,000 watched directories of 50 converted checkpoints each
(time to READY=1, RSS), idle CPU over a minute, inotify watches, and how soon a conversion starts after the
ready marker closes.

Idle wake-ups: voluntary context switches of every thread (/proc/PID/task/*/status) over the idle minute, without
a watchdog (target: none) and with WATCHDOG_USEC set (BENCH_WATCHDOG_USEC, default 60 s as in the unit's
WatchdogSec=60; target: at most one a second).

Environment: CKPTD (binary), BENCH_DIR, BENCH_DIRS (1000), BENCH_CHECKPOINTS (50), BENCH_IDLE_SECONDS (60),
BENCH_WATCHDOG_USEC (60000000).
Writes BENCH_DIR/daemon-bench.md (bench.py appends it to BENCHMARKS.md) and prints the figures.
"""

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import torch
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTD = os.environ.get("CKPTD", os.path.join(REPO, ".build", "release", "ckptd"))
DATA = os.environ.get("BENCH_DIR", os.path.join(REPO, "bench-data"))
DIRS = int(os.environ.get("BENCH_DIRS", "1000"))
CKPTS = int(os.environ.get("BENCH_CHECKPOINTS", "50"))
IDLE = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
WATCHDOG_USEC = int(os.environ.get("BENCH_WATCHDOG_USEC", "60000000"))
SETTLE = 1.0


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def build_tree(root: str):
    templates = os.path.join(root, "templates")
    os.makedirs(templates)
    sd = {"w": torch.arange(16, dtype=torch.float32)}
    save_file(sd, os.path.join(templates, "model.safetensors"), metadata={"format": "pt"})
    torch.save(sd, os.path.join(templates, "pytorch_model.bin"))
    with open(os.path.join(templates, "trainer_state.json"), "w") as f:
        f.write("{}\n")
    sizes = {n: os.path.getsize(os.path.join(templates, n)) for n in os.listdir(templates)}
    dropins = os.path.join(root, "watch.d")
    os.makedirs(dropins)
    now = time.time()
    for d in range(DIRS):
        out = os.path.join(root, "runs", f"run-{d:04d}")
        os.makedirs(out)
        lines = []
        for c in range(CKPTS):
            ck = os.path.join(out, f"checkpoint-{(c + 1) * 10}")
            os.mkdir(ck)
            for n in sizes:
                os.link(os.path.join(templates, n), os.path.join(ck, n))
            lines.append(json.dumps({
                "checkpoint": os.path.basename(ck), "event": "converted", "format": "bin", "dtype": "keep",
                "sources": [{"name": "model.safetensors", "bytes": sizes["model.safetensors"]}],
                "outputs": [{"name": "pytorch_model.bin", "bytes": sizes["pytorch_model.bin"]}],
                "tensors": 1, "start": iso(now), "end": iso(now), "seconds": 0.0, "verified": True}))
        with open(os.path.join(out, ".ckptd-manifest.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(dropins, f"{d:04d}-run.toml"), "w") as f:
            f.write(f'path = "{out}"\nformat = "bin"\nsettle_seconds = {SETTLE}\n')
    config = os.path.join(root, "ckptd.toml")
    with open(config, "w") as f:
        f.write(f'status_file = "{root}/status.json"\ndropin_dirs = ["{dropins}"]\nworkers = 1\n'
                'log_level = "warning"\n')
    return config


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    return "?"


def voluntary_switches(pid: int) -> dict:
    """voluntary_ctxt_switches of each live thread (tid -> count): each is a wake-up after a sleep."""
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        counts[tid] = int(line.split(":", 1)[1])
        except (OSError, ValueError):
            pass
    return counts


def dispatch_manager_threads(pid: int) -> set:
    """Threads sleeping in epoll_wait: libdispatch's manager thread (Linux), whose workqueue monitor is a 1 Hz
    timer in every process that uses Swift concurrency; ckptd's own threads sleep in poll or sigsuspend."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                if "epoll_wait" in f.read():
                    found.add(tid)
        except OSError:
            pass
    return found


def wakeups_between(before: dict, after: dict, skip=()) -> int:
    """Wake-ups of the threads alive at the end since `before` (a thread started meanwhile counts whole)."""
    return sum(count - before.get(tid, 0) for tid, count in after.items() if tid not in skip)


def drain(sock):
    """Reads what the daemon sent (systemd reads its notify socket too)."""
    while True:
        try:
            sock.recv(4096)
        except (BlockingIOError, socket.timeout):
            return


def watch_wakeups(pid: int, seconds: float, sock=None):
    """Voluntary context switches of every thread over `seconds`, sampled every half second so that a thread
    that exits meanwhile (libdispatch retires idle workers after a few seconds) still counts. Returns (all
    threads, all but libdispatch's manager thread)."""
    first = voluntary_switches(pid)
    last = dict(first)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.5)
        if sock is not None:
            drain(sock)
        last.update(voluntary_switches(pid))
    manager = dispatch_manager_threads(pid)
    return wakeups_between(first, last), wakeups_between(first, last, manager)


def start_daemon(config: str, sock_path: str, extra_env=None):
    """Starts `ckptd run`; returns (process, socket, seconds to READY=1)."""
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(120)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, **(extra_env or {}))
    t0 = time.monotonic()
    proc = subprocess.Popen([CKPTD, "run", "--config", config], env=env, stderr=subprocess.DEVNULL)
    while True:
        msg = sock.recv(4096).decode()
        if "READY=1" in msg.split("\n"):
            break
    return proc, sock, time.monotonic() - t0


def idle_wakeups(config: str, sock_path: str, extra_env):
    """Voluntary context switches of an idle daemon over IDLE seconds: (all threads, without libdispatch's
    manager thread)."""
    proc, sock, _ = start_daemon(config, sock_path, extra_env)
    try:
        sock.settimeout(0)
        time.sleep(10)  # start-up's helper threads have exited by then
        return watch_wakeups(proc.pid, IDLE, sock)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sock.close()


def inotify_watches(pid: int) -> int:
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    total += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            pass
    return total


def main():
    root = os.path.join(DATA, "daemon")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    t = time.time()
    config = build_tree(root)
    print(f"daemon bench: built {DIRS} dirs x {CKPTS} checkpoints in {time.time() - t:.1f} s", flush=True)
    sock_path = os.path.join(root, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(120)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path)
    subprocess.run(["sync"])
    t0 = time.monotonic()
    proc = subprocess.Popen([CKPTD, "run", "--config", config], env=env, stderr=subprocess.DEVNULL)
    try:
        while True:
            msg = sock.recv(4096).decode()
            if "READY=1" in msg.split("\n"):
                break
        ready = time.monotonic() - t0
        rss_ready = proc_status(proc.pid, "VmHWM")
        watches = inotify_watches(proc.pid)
        time.sleep(10)  # start-up's helper threads have exited by then
        c0 = proc_cpu_seconds(proc.pid)
        idle_switches = watch_wakeups(proc.pid, IDLE)
        idle_cpu = proc_cpu_seconds(proc.pid) - c0
        # Conversion latency: a new checkpoint in one watched directory.
        out = os.path.join(root, "runs", "run-0000")
        ck = os.path.join(out, "checkpoint-99999")
        os.mkdir(ck)
        shutil.copy(os.path.join(root, "templates", "model.safetensors"), ck)
        with open(os.path.join(ck, "trainer_state.json"), "w") as f:
            f.write("{}\n")
        marker_closed = time.time()
        watches_busy = inotify_watches(proc.pid)
        record = None
        deadline = time.time() + 60
        while time.time() < deadline and record is None:
            with open(os.path.join(out, ".ckptd-manifest.jsonl")) as f:
                for line in f:
                    if '"checkpoint-99999"' in line:
                        record = json.loads(line)
            time.sleep(0.05)
        if record is None:
            raise RuntimeError("the new checkpoint was not converted within 60 s")
        started = datetime.datetime.fromisoformat(record["start"].replace("Z", "+00:00")).timestamp()
        latency = started - marker_closed
        rss_end = proc_status(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sock.close()
    watchdog_switches = idle_wakeups(config, sock_path, {"WATCHDOG_USEC": str(WATCHDOG_USEC)})
    lines = [
        "## Daemon",
        "",
        f"Produced by `make bench` (`scripts/bench/daemon_bench.py`): {DIRS} watched directories with {CKPTS} "
        f"converted checkpoints each ({DIRS * CKPTS:,} checkpoint folders), settle_seconds = {SETTLE:g}.",
        "",
        "| figure | value | target |",
        "| --- | ---: | --- |",
        f"| start-up to READY=1 (reconciliation of every directory) | {ready:.2f} s | < 5 s |",
        f"| peak RSS at READY | {rss_ready} | < 100 MiB |",
        f"| peak RSS after a conversion | {rss_end} | < 100 MiB |",
        f"| inotify watches when idle | {watches} | <= {DIRS} roots (+ drop-in dirs) |",
        f"| inotify watches with one checkpoint being written | {watches_busy} | roots + 1 |",
        f"| CPU time while idle for {IDLE:g} s | {idle_cpu:.3f} s ({100 * idle_cpu / IDLE:.2f} %) | near zero |",
        f"| conversion start after the ready marker closed | {latency:.2f} s | <= settle {SETTLE:g} s + 0.5 s |",
        f"| idle wake-ups over {IDLE:g} s, no watchdog: ckptd's threads (all threads, with libdispatch's 1 Hz "
        f"workqueue monitor) | {idle_switches[1]} ({idle_switches[0]}) | 0 |",
        f"| idle wake-ups over {IDLE:g} s, WATCHDOG_USEC={WATCHDOG_USEC}: ckptd's threads (all threads) "
        f"| {watchdog_switches[1]} ({watchdog_switches[0]}, {watchdog_switches[0] / IDLE:.2f}/s) | <= 1/s |",
    ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(DATA, "daemon-bench.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
