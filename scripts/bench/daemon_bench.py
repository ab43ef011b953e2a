"""Daemon figures for `make bench` (issue 14 item 5, issue 11). Parts (BENCH_DAEMON_PARTS, default all of
"startup poll churn fuse"):

- startup: 1,000 watched directories of 50 converted checkpoints each: time to READY=1 and RSS, inotify watches,
  idle CPU and wake-ups over a minute (voluntary context switches of every thread, /proc/PID/task/*/status),
  without a watchdog (target: none) and with WATCHDOG_USEC (BENCH_WATCHDOG_USEC, default 60 s as in the unit's
  WatchdogSec=60; target: at most one a second), and how soon a conversion starts after the ready marker closes
  with settle_seconds = 1.
- poll: the same 1,000 x 50 fixture with `watch = "poll"`, `poll_seconds = 10` in every drop-in: ckptd's CPU
  time (utime + stime of /proc/PID/stat) over BENCH_POLL_IDLE_SECONDS (60) of idle after start-up, as % of one
  core (issue 11 target: under 1 %), with the directories the status file says were polled in the last
  poll_seconds to show the polls ran; then again with a `metrics_file` (its ckptd_polls_total counts the polls).
- churn: RSS after BENCH_CONVERSIONS (10,000) conversions of tiny real checkpoints (4 KiB of safetensors and a
  trainer_state.json marker written last, settle_seconds = 0) fed in batches of BENCH_CHURN_BATCH (100) into
  BENCH_CHURN_DIRS (1) watched directories; each batch is deleted once converted, as the Trainer's rotation does.
  VmRSS every BENCH_CHURN_SAMPLE (1,000) conversions, and the seconds each block of them took; stops early at a
  sample point when the next block would end past BENCH_CHURN_SECONDS (540), and says so with the rate.
- fuse: detection latency on a FUSE mount: a bindfs mount M of a backing folder B (fresh attributes, as
  Tests/interop/fuse_mounts.py), a drop-in watching M with watch = "auto" (so the daemon polls it),
  settle_seconds = 1, for each poll_seconds of BENCH_FUSE_POLLS ("1 10"; 10 is written as no key: the default).
  BENCH_FUSE_SAMPLES (5) checkpoints are written into B (inotify on M sees nothing, as on NFS with the writer on
  another node), the marker last, each after a random pause so that markers land anywhere in the poll cycle;
  latency = from the marker's close to the claim file `.ckptd-claim.1` appearing in B (seen with inotify on B)
  and to the manifest record's "start". Needs root, /dev/fuse and bindfs; always unmounts.

Every part stores its figures with the commit, the time, the load average before and after and the other busy
processes in BENCH_DIR/daemon-bench.json, so parts can be run one at a time; BENCH_DIR/daemon-bench.md is made
from all stored parts and replaces the part of BENCHMARKS.md between the `daemon-bench:begin` and
`daemon-bench:end` markers. Environment: CKPTD (binary), BENCH_DIR, BENCH_DIRS (1000), BENCH_CHECKPOINTS (50),
BENCH_IDLE_SECONDS (60), BENCH_KEEP=1 keeps the data, BENCH_REPORT (default BENCHMARKS.md) is the file spliced into.
"""

import ctypes
import datetime
import json
import os
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time

import torch
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTD = os.environ.get("CKPTD", os.path.join(REPO, ".build", "release", "ckptd"))
DATA = os.environ.get("BENCH_DIR", os.path.join(REPO, "bench-data"))
PARTS = os.environ.get("BENCH_DAEMON_PARTS", "startup poll churn fuse").split()
DIRS = int(os.environ.get("BENCH_DIRS", "1000"))
CKPTS = int(os.environ.get("BENCH_CHECKPOINTS", "50"))
IDLE = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
WATCHDOG_USEC = int(os.environ.get("BENCH_WATCHDOG_USEC", "60000000"))
POLL_SECONDS = float(os.environ.get("BENCH_POLL_SECONDS", "10"))
POLL_IDLE = float(os.environ.get("BENCH_POLL_IDLE_SECONDS", "60"))
CONVERSIONS = int(os.environ.get("BENCH_CONVERSIONS", "10000"))
CHURN_BATCH = int(os.environ.get("BENCH_CHURN_BATCH", "100"))
CHURN_DIRS = int(os.environ.get("BENCH_CHURN_DIRS", "1"))
CHURN_SAMPLE = int(os.environ.get("BENCH_CHURN_SAMPLE", "1000"))
CHURN_BUDGET = float(os.environ.get("BENCH_CHURN_SECONDS", "540"))
FUSE_POLLS = [float(p) for p in os.environ.get("BENCH_FUSE_POLLS", "1 10").split()]
FUSE_SAMPLES = int(os.environ.get("BENCH_FUSE_SAMPLES", "5"))
KEEP = os.environ.get("BENCH_KEEP", "") == "1"
SETTLE = 1.0
DEFAULT_POLL_SECONDS = 10.0
BEGIN, END = "<!-- daemon-bench:begin -->", "<!-- daemon-bench:end -->"


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def parse_iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def spread(values, fmt="{:.2f}") -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


# ---------------------------------------------------------------------------------------------------------------
# The machine


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def commit() -> str:
    return subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                          text=True).stdout.strip() or "?"


def busy_processes(limit: int = 4) -> str:
    """What else is running: the processes using the most CPU over the last two seconds (not this bench)."""
    def ticks():
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    head, rest = f.read().rsplit(")", 1)
                fields = rest.split()
                out[int(pid)] = (head.split("(", 1)[1], int(fields[11]) + int(fields[12]))
            except (OSError, IndexError, ValueError):
                pass
        return out

    mine = {os.getpid(), os.getppid()}
    first = ticks()
    time.sleep(2)
    second = ticks()
    hz = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid, (name, t) in second.items():
        if pid in mine:
            continue
        delta = t - first.get(pid, (name, t))[1]
        if delta > 0:
            used[name] = used.get(name, 0) + delta
    top = sorted(used.items(), key=lambda kv: -kv[1])[:limit]
    if not top:
        return "nothing else busy"
    return ", ".join(f"{name} {100 * t / hz / 2:.0f} %" for name, t in top)


def context() -> dict:
    return {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit(), "load_before": load(),
            "others_before": busy_processes()}


def close_context(ctx: dict) -> dict:
    ctx["load_after"] = load()
    ctx["others_after"] = busy_processes()
    return ctx


# ---------------------------------------------------------------------------------------------------------------
# The daemon process


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


def proc_kib(pid: int, key: str) -> int:
    return int(proc_status(pid, key).split()[0])


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


class Daemon:
    """`ckptd run` with a notify socket of its own; `ready` is the seconds from exec to READY=1."""

    def __init__(self, config: str, sock_path: str, extra_env=None, stderr=None):
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(sock_path)
        self.sock.settimeout(1)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path, **(extra_env or {}))
        t0 = time.monotonic()
        self.proc = subprocess.Popen([CKPTD, "run", "--config", config], env=env,
                                     stderr=stderr if stderr is not None else subprocess.DEVNULL)
        self.pid = self.proc.pid
        try:
            while True:
                try:
                    msg = self.sock.recv(4096).decode()
                except socket.timeout:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"ckptd run --config {config} exited with {self.proc.returncode} "
                                           "before READY=1") from None
                    if time.monotonic() - t0 > 300:
                        raise RuntimeError(f"ckptd run --config {config}: no READY=1 within 300 s") from None
                    continue
                if "READY=1" in msg.split("\n"):
                    break
        except BaseException:
            self.stop()
            raise
        self.ready = time.monotonic() - t0
        self.sock.settimeout(0)

    def drain(self):
        drain(self.sock)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


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


def metric(path: str, name: str) -> float:
    """A counter's value in the daemon's Prometheus text file (summed over labels); 0 when absent."""
    total = 0.0
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    total += float(line.split()[-1])
    except OSError:
        pass
    return total


def write_config(root: str, name: str, dropins: str, extra: str = "") -> str:
    config = os.path.join(root, f"{name}.toml")
    with open(config, "w") as f:
        f.write(f'status_file = "{root}/{name}-status.json"\ndropin_dirs = ["{dropins}"]\nworkers = 1\n'
                f'log_level = "warning"\n{extra}')
    return config


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


def template(root: str) -> dict:
    """A tiny real checkpoint (safetensors of 4 KiB, its .bin, the marker) in root/templates; returns sizes."""
    templates = os.path.join(root, "templates")
    if not os.path.isdir(templates):
        os.makedirs(templates)
        sd = {"w": torch.arange(1024, dtype=torch.float32)}
        save_file(sd, os.path.join(templates, "model.safetensors"), metadata={"format": "pt"})
        torch.save(sd, os.path.join(templates, "pytorch_model.bin"))
        with open(os.path.join(templates, "trainer_state.json"), "w") as f:
            f.write("{}\n")
    return {n: os.path.getsize(os.path.join(templates, n)) for n in os.listdir(templates)}


def build_tree(root: str):
    """DIRS watched directories of CKPTS converted checkpoints each (hard links of one template, a manifest
    saying each was converted), one drop-in per directory; returns (drop-in dir, directories). Reused when it
    is there already (the poll part runs on the start-up part's tree)."""
    dropins = os.path.join(root, "watch.d")
    runs = [os.path.join(root, "runs", f"run-{d:04d}") for d in range(DIRS)]
    stamp = os.path.join(root, "tree-complete")
    if os.path.exists(stamp) and open(stamp).read() == f"{DIRS} {CKPTS}":
        return dropins, runs
    for path in ("runs", "watch.d", "tree-complete"):
        shutil.rmtree(os.path.join(root, path), ignore_errors=True)
    t = time.time()
    sizes = template(root)
    templates = os.path.join(root, "templates")
    os.makedirs(dropins)
    now = time.time()
    for d, out in enumerate(runs):
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
    subprocess.run(["sync"])
    with open(stamp, "w") as f:
        f.write(f"{DIRS} {CKPTS}")
    print(f"daemon bench: built {DIRS} dirs x {CKPTS} checkpoints in {time.time() - t:.1f} s", flush=True)
    return dropins, runs


class ManifestTail:
    """New whole lines of a manifest (JSON Lines), read from where the last call stopped."""

    def __init__(self, path: str):
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0
        self.partial = b""

    def records(self) -> list:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a torn line (readers tolerate them)
        return out


def write_checkpoint(folder: str, templates: str) -> float:
    """A checkpoint folder with the template's safetensors, the marker written last; returns the wall time the
    marker was closed."""
    os.mkdir(folder)
    with open(os.path.join(templates, "model.safetensors"), "rb") as f:
        data = f.read()
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(data)
    with open(os.path.join(folder, "trainer_state.json"), "w") as f:
        f.write("{}\n")
    return time.time()


# ---------------------------------------------------------------------------------------------------------------
# Part: start-up, idle, wake-ups, conversion start


def part_startup(root: str) -> dict:
    dropins, runs = build_tree(root)
    config = write_config(root, "startup", dropins)
    sock_path = os.path.join(root, "notify.sock")
    ctx = context()
    subprocess.run(["sync"])
    with Daemon(config, sock_path) as daemon:
        ready = daemon.ready
        rss_ready = proc_status(daemon.pid, "VmHWM")
        watches = inotify_watches(daemon.pid)
        time.sleep(10)  # start-up's helper threads have exited by then
        c0 = proc_cpu_seconds(daemon.pid)
        idle_switches = watch_wakeups(daemon.pid, IDLE, daemon.sock)
        idle_cpu = proc_cpu_seconds(daemon.pid) - c0
        # Conversion latency: a new checkpoint in one watched directory.
        out = runs[0]
        ck = os.path.join(out, "checkpoint-99999")
        tail = ManifestTail(os.path.join(out, ".ckptd-manifest.jsonl"))
        marker_closed = write_checkpoint(ck, os.path.join(root, "templates"))
        watches_busy = inotify_watches(daemon.pid)
        record = None
        deadline = time.time() + 60
        while time.time() < deadline and record is None:
            record = next((r for r in tail.records() if r.get("checkpoint") == "checkpoint-99999"), None)
            time.sleep(0.02)
        if record is None:
            raise RuntimeError("the new checkpoint was not converted within 60 s")
        latency = parse_iso(record["start"]) - marker_closed
        rss_end = proc_status(daemon.pid, "VmHWM")
    shutil.rmtree(ck, ignore_errors=True)
    # The manifest keeps its extra line; drop it so the fixture is the same for the next part and run.
    with open(os.path.join(out, ".ckptd-manifest.jsonl")) as f:
        lines = [line for line in f if '"checkpoint-99999"' not in line]
    with open(os.path.join(out, ".ckptd-manifest.jsonl"), "w") as f:
        f.writelines(lines)
    with Daemon(config, sock_path, {"WATCHDOG_USEC": str(WATCHDOG_USEC)}) as daemon:
        time.sleep(10)
        watchdog_switches = watch_wakeups(daemon.pid, IDLE, daemon.sock)
    rows = [
        ("start-up to READY=1 (reconciliation of every directory)", f"{ready:.2f} s", "< 5 s"),
        ("peak RSS at READY", rss_ready, "< 100 MiB"),
        ("peak RSS after a conversion", rss_end, "< 100 MiB"),
        ("inotify watches when idle", str(watches), f"<= {DIRS} roots (+ drop-in dirs)"),
        ("inotify watches with one checkpoint being written", str(watches_busy), "roots + 1"),
        (f"CPU time while idle for {IDLE:g} s", f"{idle_cpu:.3f} s ({100 * idle_cpu / IDLE:.2f} %)", "near zero"),
        ("conversion start after the ready marker closed", f"{latency:.2f} s", f"<= settle {SETTLE:g} s + 0.5 s"),
        (f"idle wake-ups over {IDLE:g} s, no watchdog: ckptd's threads (all threads, with libdispatch's 1 Hz "
         "workqueue monitor)", f"{idle_switches[1]} ({idle_switches[0]})", "0"),
        (f"idle wake-ups over {IDLE:g} s, WATCHDOG_USEC={WATCHDOG_USEC}: ckptd's threads (all threads)",
         f"{watchdog_switches[1]} ({watchdog_switches[0]}, {watchdog_switches[0] / IDLE:.2f}/s)", "<= 1/s"),
    ]
    return dict(close_context(ctx), rows=rows,
                title=f"Start-up, idle, conversion start: {DIRS} watched directories with {CKPTS} converted "
                      f"checkpoints each ({DIRS * CKPTS:,} checkpoint folders), settle_seconds = {SETTLE:g}, "
                      "inotify")


# ---------------------------------------------------------------------------------------------------------------
# Part: poll cost (issue 11)


def poll_run(root: str, dropins: str, with_metrics: bool) -> dict:
    """One idle daemon polling every directory: CPU, wake-ups, polls seen in the status file (and the metrics
    file when it is on)."""
    name = "poll-metrics" if with_metrics else "poll"
    metrics = os.path.join(root, f"{name}.prom")
    config = write_config(root, name, dropins, f'metrics_file = "{metrics}"\n' if with_metrics else "")
    status = os.path.join(root, f"{name}-status.json")
    subprocess.run(["sync"])
    with Daemon(config, os.path.join(root, "notify.sock")) as daemon:
        r = {"ready": daemon.ready, "rss_ready": proc_status(daemon.pid, "VmHWM")}
        time.sleep(10)  # start-up's helper threads have exited by then; the first polls have run
        polls0 = metric(metrics, "ckptd_polls_total")
        c0 = proc_cpu_seconds(daemon.pid)
        t0 = time.monotonic()
        wall0 = time.time()
        r["switches"] = watch_wakeups(daemon.pid, POLL_IDLE, daemon.sock)
        r["cpu"] = proc_cpu_seconds(daemon.pid) - c0
        r["seconds"] = time.monotonic() - t0
        time.sleep(1.5)  # the metrics and status files are rewritten at most about once a second
        r["polls"] = metric(metrics, "ckptd_polls_total") - polls0 if with_metrics else None
        r["rss_end"] = proc_status(daemon.pid, "VmHWM")
        modes, durations, recent = {}, [], 0
        try:
            with open(status) as f:
                doc = json.load(f)
            for entry in doc.get("directories", []):
                mode = (entry.get("file_system") or {}).get("mode", "?")
                modes[mode] = modes.get(mode, 0) + 1
                last = entry.get("last_poll")
                if last:
                    durations.append(last.get("seconds", 0.0))
                    if last.get("at") and parse_iso(last["at"]) >= wall0 + r["seconds"] - POLL_SECONDS - 1:
                        recent += 1
        except (OSError, ValueError):
            pass
        r.update(modes=modes, durations=durations, recent=recent)
    return r


def part_poll(root: str) -> dict:
    _, runs = build_tree(root)
    dropins = os.path.join(root, "watch-poll.d")
    shutil.rmtree(dropins, ignore_errors=True)
    os.makedirs(dropins)
    for d, out in enumerate(runs):
        with open(os.path.join(dropins, f"{d:04d}-run.toml"), "w") as f:
            f.write(f'path = "{out}"\nformat = "bin"\nsettle_seconds = {SETTLE}\nwatch = "poll"\n'
                    f'poll_seconds = {POLL_SECONDS:g}\n')
    ctx = context()
    plain = poll_run(root, dropins, with_metrics=False)
    metered = poll_run(root, dropins, with_metrics=True)
    seconds = plain["seconds"]
    expected = DIRS * metered["seconds"] / POLL_SECONDS
    rows = [
        ("start-up to READY=1", f"{plain['ready']:.2f} s", "< 5 s"),
        ("watch mode per directory (status file)",
         ", ".join(f"{n} {m}" for m, n in sorted(plain["modes"].items())) or "?", f"{DIRS} poll"),
        (f"directories polled in the last {POLL_SECONDS:g} s (status file, last_poll)", str(plain["recent"]),
         str(DIRS)),
        ("one directory's poll (status file, last_poll), median (range)",
         spread([d * 1000 for d in plain["durations"]], "{:.2f}") + " ms" if plain["durations"] else "-", ""),
        (f"**CPU time over {seconds:.0f} s of idle polling** (default config, no metrics file)",
         f"**{plain['cpu']:.2f} s ({100 * plain['cpu'] / seconds:.2f} % of one core)**", "< 1 % of a core"),
        (f"wake-ups over {seconds:.0f} s: ckptd's threads (all threads)",
         f"{plain['switches'][1]} ({plain['switches'][0]}, {plain['switches'][0] / seconds:.1f}/s)", ""),
        ("peak RSS at READY / at the end", f"{plain['rss_ready']} / {plain['rss_end']}", "< 100 MiB"),
        (f"with `metrics_file` set: polls in {metered['seconds']:.0f} s (ckptd_polls_total)",
         f"{metered['polls']:.0f}", f"about {expected:.0f} ({DIRS} every {POLL_SECONDS:g} s)"),
        (f"with `metrics_file` set: CPU time over {metered['seconds']:.0f} s",
         f"{metered['cpu']:.2f} s ({100 * metered['cpu'] / metered['seconds']:.2f} % of one core)", "< 1 % of a core"),
    ]
    return dict(close_context(ctx), rows=rows,
                title=f"Poll cost (issue 11): the same {DIRS} x {CKPTS} tree, every drop-in with "
                      f'`watch = "poll"`, `poll_seconds = {POLL_SECONDS:g}`, idle; once with the default config '
                      "and once with a metrics file")


# ---------------------------------------------------------------------------------------------------------------
# Part: RSS after many conversions


def part_churn(root: str) -> dict:
    base = os.path.join(root, "churn")
    shutil.rmtree(base, ignore_errors=True)
    templates = os.path.join(root, "templates")
    template(root)
    dropins = os.path.join(base, "watch.d")
    os.makedirs(dropins)
    outs = [os.path.join(base, f"run-{d}") for d in range(CHURN_DIRS)]
    for d, out in enumerate(outs):
        os.makedirs(out)
        with open(os.path.join(dropins, f"{d:02d}-run.toml"), "w") as f:
            f.write(f'path = "{out}"\nformat = "bin"\nsettle_seconds = 0\n')
    config = write_config(base, "churn", dropins)
    ctx = context()
    events = {}
    series = []  # (conversions, VmRSS KiB, seconds since the first checkpoint, ckptd CPU seconds)
    step = 0
    done = 0
    stopped_early = False
    with Daemon(config, os.path.join(base, "notify.sock")) as daemon:
        tails = {out: ManifestTail(os.path.join(out, ".ckptd-manifest.jsonl")) for out in outs}
        series.append((0, proc_kib(daemon.pid, "VmRSS"), 0.0, proc_cpu_seconds(daemon.pid)))
        t0 = time.monotonic()
        while done < CONVERSIONS:
            batch = min(CHURN_BATCH, CONVERSIONS - done)
            batch_names = []
            for i in range(batch):
                step += 1
                batch_names.append((outs[i % len(outs)], f"checkpoint-{step}"))
                write_checkpoint(os.path.join(*batch_names[-1]), templates)
            waiting = set(batch_names)
            last_progress = time.monotonic()
            while waiting:
                progress = False
                for out, tail in tails.items():
                    for record in tail.records():
                        key = (out, record.get("checkpoint"))
                        if key in waiting:
                            waiting.discard(key)
                            events[record.get("event", "?")] = events.get(record.get("event", "?"), 0) + 1
                            progress = True
                if progress:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > 120:
                    raise RuntimeError(f"churn: no manifest record for 120 s; {len(waiting)} of the batch left, "
                                       f"{done} converted before it")
                else:
                    time.sleep(0.01)
                daemon.drain()
            for out, name in batch_names:
                shutil.rmtree(os.path.join(out, name), ignore_errors=True)  # the Trainer's rotation
            done += batch
            if done % CHURN_SAMPLE == 0 or done == CONVERSIONS:
                time.sleep(0.3)  # the deletions' events handled
                elapsed = time.monotonic() - t0
                series.append((done, proc_kib(daemon.pid, "VmRSS"), elapsed, proc_cpu_seconds(daemon.pid)))
                print(f"churn: {done} conversions in {elapsed:.1f} s, VmRSS {series[-1][1] / 1024:.1f} MiB",
                      flush=True)
                # Stop at this sample point when the next block would likely end past the budget (blocks grow
                # slower when each conversion costs more as the history grows).
                block = series[-1][2] - series[-2][2]
                if done < CONVERSIONS and elapsed + 1.3 * block > CHURN_BUDGET:
                    stopped_early = True
                    break
        hwm = proc_status(daemon.pid, "VmHWM")
        manifest_bytes = sum(os.path.getsize(t.path) for t in tails.values() if os.path.exists(t.path))
    if not KEEP:
        shutil.rmtree(base, ignore_errors=True)
    elapsed = series[-1][2]
    rate = done / elapsed if elapsed else 0.0
    cpu = series[-1][3] - series[0][3]
    first = next((s for s in series if s[0] >= CHURN_SAMPLE), series[-1])
    growth = (series[-1][1] - first[1]) / 1024
    rows = [
        ("conversions (manifest events)", f"{done:,} ({', '.join(f'{n:,} {e}' for e, n in sorted(events.items()))})",
         f"{CONVERSIONS:,}"),
        ("wall time, rate", f"{elapsed:.1f} s, {rate:.1f} conversions/s", "< 10 min"),
        ("ckptd CPU time per conversion", f"{1000 * cpu / max(done, 1):.1f} ms", ""),
        ("VmRSS at READY", f"{series[0][1] / 1024:.1f} MiB", ""),
        (f"VmRSS every {CHURN_SAMPLE:,} conversions (MiB)",
         " ".join(f"{s[1] / 1024:.1f}" for s in series[1:]), ""),
        (f"seconds per {CHURN_SAMPLE:,} conversions",
         " ".join(f"{b[2] - a[2]:.1f}" for a, b in zip(series, series[1:])) or "-",
         "flat (no cost growing with history)"),
        (f"VmRSS growth from {first[0]:,} to {done:,} conversions", f"{growth:+.1f} MiB", "none"),
        ("peak RSS (VmHWM)", hwm, "< 100 MiB"),
        ("manifest size at the end", f"{manifest_bytes / 1024:.0f} KiB", ""),
    ]
    blocks = [b[2] - a[2] for a, b in zip(series, series[1:])]
    note = (f"Stopped after {done:,} of {CONVERSIONS:,} conversions: the next block of {CHURN_SAMPLE:,} would have "
            f"ended past the {CHURN_BUDGET:g} s budget (BENCH_CHURN_SECONDS). The first block took {blocks[0]:.1f} s, "
            f"the last {blocks[-1]:.1f} s: at a constant {rate:.1f} conversions/s, {CONVERSIONS:,} would take "
            f"{CONVERSIONS / max(rate, 1e-9) / 60:.1f} min, more if the cost per conversion keeps growing."
            if stopped_early else "")
    return dict(close_context(ctx), rows=rows, note=note,
                title=f"RSS over {done:,} conversions: tiny real checkpoints (4 KiB safetensors, marker last) in "
                      f"batches of {CHURN_BATCH} into {CHURN_DIRS} watched director{'y' if CHURN_DIRS == 1 else 'ies'}"
                      f", settle_seconds = 0, each batch deleted once converted (the Trainer's rotation)")


# ---------------------------------------------------------------------------------------------------------------
# Part: detection latency on a FUSE mount (issue 11)

IN_CREATE = 0x100
IN_MOVED_TO = 0x80


class Inotify:
    """inotify on one folder (libc via ctypes): the wall time a name first appeared in it."""

    def __init__(self, folder: str):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self.libc.inotify_add_watch(self.fd, folder.encode(), IN_CREATE | IN_MOVED_TO) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")

    def names(self) -> list:
        out = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            now = time.time()
            i = 0
            while i + 16 <= len(data):
                _, _, _, length = struct.unpack_from("iIII", data, i)
                out.append((data[i + 16:i + 16 + length].rstrip(b"\0").decode(), now))
                i += 16 + length

    def close(self):
        os.close(self.fd)


def mounts_under(path: str) -> list:
    real = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == real or point.startswith(real.rstrip("/") + "/"):
                found.append(point)
    return found


def unmount(point: str):
    # A process still inside the mount makes umount fail: detach it lazily then.
    if subprocess.run(["umount", point], stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)


def fuse_setting(base: str, poll: float) -> dict:
    tag = f"poll-{poll:g}"
    backing, mount = os.path.join(base, f"{tag}-B"), os.path.join(base, f"{tag}-M")
    os.makedirs(backing)
    os.makedirs(mount)
    templates = os.path.join(os.path.dirname(base), "templates")
    dropins = os.path.join(base, f"{tag}-watch.d")
    os.makedirs(dropins)
    with open(os.path.join(dropins, "10-fuse.toml"), "w") as f:
        f.write(f'path = "{mount}"\nformat = "bin"\nsettle_seconds = {SETTLE:g}\nwatch = "auto"\n' +
                ("" if poll == DEFAULT_POLL_SECONDS else f"poll_seconds = {poll:g}\n"))
    config = write_config(base, tag, dropins)
    result = {"poll": poll, "claim": [], "start": [], "mode": "?", "failure": ""}
    subprocess.run(["bindfs", "-o", "attr_timeout=0,entry_timeout=0,negative_timeout=0,subtype=ckptdbench",
                    backing, mount], check=True)
    try:
        with Daemon(config, os.path.join(base, "notify.sock")) as daemon:
            try:
                with open(os.path.join(base, f"{tag}-status.json")) as f:
                    for entry in json.load(f).get("directories", []):
                        fs = entry.get("file_system") or {}
                        result["mode"] = f"{fs.get('type', '?')}: {fs.get('mode', '?')}"
            except (OSError, ValueError):
                pass
            tail = ManifestTail(os.path.join(backing, ".ckptd-manifest.jsonl"))
            for sample in range(FUSE_SAMPLES):
                time.sleep(random.uniform(0.2, poll + 0.2))  # land anywhere in the poll cycle
                name = f"checkpoint-{sample + 1}"
                folder = os.path.join(backing, name)
                os.mkdir(folder)
                watcher = Inotify(folder)
                try:
                    with open(os.path.join(templates, "model.safetensors"), "rb") as f:
                        data = f.read()
                    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
                        f.write(data)
                    with open(os.path.join(folder, "trainer_state.json"), "w") as f:
                        f.write("{}\n")
                    marker = time.time()
                    claim_seen, record = None, None
                    deadline = time.monotonic() + SETTLE + 3 * poll + 30
                    while record is None and time.monotonic() < deadline:
                        for seen, at in watcher.names():
                            if claim_seen is None and seen.startswith(".ckptd-claim."):
                                claim_seen = at
                        record = next((r for r in tail.records() if r.get("checkpoint") == name), None)
                        daemon.drain()
                        time.sleep(0.002)
                finally:
                    watcher.close()
                if record is None:
                    result["failure"] = (f"sample {sample + 1}: not converted within {SETTLE + 3 * poll + 30:g} s of "
                                         "the marker (does this build poll the mount?)")
                    break
                if record.get("event") != "converted":
                    result["failure"] = f"sample {sample + 1}: manifest event {record.get('event')}: {record}"
                    break
                start = parse_iso(record["start"]) - marker
                result["start"].append(start)
                if claim_seen is not None:
                    result["claim"].append(claim_seen - marker)
                print(f"fuse poll_seconds={poll:g} sample {sample + 1}: claim "
                      f"{'-' if claim_seen is None else f'{claim_seen - marker:.2f} s'}, start {start:.2f} s",
                      flush=True)
    finally:
        unmount(mount)
    return result


def part_fuse(root: str) -> dict:
    base = os.path.join(root, "fuse")
    for point in mounts_under(base):
        unmount(point)
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    template(root)
    ctx = context()
    if os.geteuid() != 0 or not shutil.which("bindfs") or not os.path.exists("/dev/fuse"):
        return dict(close_context(ctx), rows=[], title="Detection latency on a FUSE mount (issue 11)",
                    note="Not run: needs root, /dev/fuse and bindfs (apt-get install bindfs).")
    results = []
    try:
        for poll in FUSE_POLLS:
            results.append(fuse_setting(base, poll))
    finally:
        for point in mounts_under(base):
            unmount(point)
    if not KEEP and not mounts_under(base):
        shutil.rmtree(base, ignore_errors=True)
    rows = []
    notes = []
    for r in results:
        label = f"poll_seconds = {r['poll']:g}{' (default)' if r['poll'] == DEFAULT_POLL_SECONDS else ''}"
        rows.append((f"{label}: marker -> claim file in B, {len(r['claim'])} samples, median (range)",
                     spread(r["claim"]) + " s" if r["claim"] else "-",
                     f"settle + at most one poll ({SETTLE + r['poll']:g} s) + the scan"))
        rows.append((f"{label}: marker -> manifest \"start\", {len(r['start'])} samples, median (range)",
                     spread(r["start"]) + " s" if r["start"] else "-", ""))
        notes.append(f"poll_seconds = {r['poll']:g}: file system and watch mode in the status file: {r['mode']}"
                     + (f"; {r['failure']}" if r["failure"] else ""))
    return dict(close_context(ctx), rows=rows, note="; ".join(notes) + ".",
                title=f"Detection latency on a FUSE mount (issue 11): bindfs of a backing folder B (attr_timeout=0, "
                      f"entry_timeout=0, negative_timeout=0), a drop-in watching the mount with watch = \"auto\", "
                      f"settle_seconds = {SETTLE:g}; checkpoints written into B (no inotify event on the mount), "
                      "the marker last, at random points of the poll cycle")


# ---------------------------------------------------------------------------------------------------------------


def render(stored: dict) -> str:
    lines = ["### Daemon", "",
             f"Produced by `make bench` (`scripts/bench/daemon_bench.py`; one part alone: "
             f"`BENCH_DAEMON_PARTS=<part> scripts/bench/daemon_bench.py`). Each part states when it ran, the "
             "release build, the load average before and after and the busiest other processes.", ""]
    names = {"startup": "start-up", "poll": "poll", "churn": "churn", "fuse": "fuse"}
    for part in ("startup", "poll", "churn", "fuse"):
        r = stored.get(part)
        if not r:
            continue
        lines += [f"#### {r['title']}", "",
                  f"Part `{names[part]}`, {r['when']}, release build of {r['commit']}; load average "
                  f"{r['load_before']} -> {r['load_after']}; other processes: {r['others_before']} (before), "
                  f"{r['others_after']} (after).", ""]
        if r["rows"]:
            lines += ["| figure | value | target |", "| --- | ---: | --- |"]
            lines += [f"| {a} | {b} | {c} |" for a, b, c in r["rows"]]
            lines.append("")
        if r.get("note"):
            lines += [r["note"], ""]
    return "\n".join(lines)


def splice(text: str):
    """Replaces the daemon section of BENCHMARKS.md (between the markers; appended with them when absent)."""
    path = os.environ.get("BENCH_REPORT", os.path.join(REPO, "BENCHMARKS.md"))
    current = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if BEGIN in current and END in current:
        current = current[:current.index(BEGIN) + len(BEGIN)] + "\n" + text + current[current.index(END):]
    else:
        current = current.rstrip("\n") + f"\n\n{BEGIN}\n{text}{END}\n"
    with open(path, "w") as f:
        f.write(current)


def main():
    root = os.path.join(DATA, "daemon")
    for point in mounts_under(root):
        unmount(point)
    os.makedirs(root, exist_ok=True)
    store = os.path.join(DATA, "daemon-bench.json")
    stored = {}
    if os.path.exists(store):
        try:
            stored = json.load(open(store))
        except ValueError:
            stored = {}
    parts = {"startup": part_startup, "poll": part_poll, "churn": part_churn, "fuse": part_fuse}
    failed = []
    try:
        for part in PARTS:
            if part not in parts:
                raise SystemExit(f"daemon bench: unknown part {part!r} (startup, poll, churn, fuse)")
            print(f"daemon bench: part {part}", flush=True)
            try:
                stored[part] = parts[part](root)
            except Exception as error:  # the other parts still run; the report says what failed
                failed.append(part)
                print(f"daemon bench: part {part} failed: {error!r}", file=sys.stderr, flush=True)
                stored[part] = dict(close_context(context()), rows=[], title=f"Part {part}",
                                    note=f"**Failed**: {error}")
            with open(store, "w") as f:
                json.dump(stored, f, indent=1)
            text = render(stored)
            with open(os.path.join(DATA, "daemon-bench.md"), "w") as f:
                f.write(text)
            splice(text)
            print(render({part: stored[part]}), flush=True)
    finally:
        if not KEEP and not mounts_under(root):
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
