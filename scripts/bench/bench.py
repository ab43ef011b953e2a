"""`make bench`: ckptd against cp + fsync, the Python converters and an anchor build of ckptd (an older commit),
at real sizes, and what a conversion does to a job beside it.

Parts (BENCH_PARTS, default all of "speed yield concurrent big"):
- speed: every route at each of BENCH_SIZES (GiB, default "1 4"), single file and sharded, both directions,
  BENCH_RUNS runs (default 3) interleaved row by row so that the machine's other load hits every row alike;
  median and range of wall time, CPU time, peak RSS, and the MiB of source + output left in the page cache.
  Every run starts with a cold source (fsync + POSIX_FADV_DONTNEED of every source file) and, unless
  BENCH_WARM_MEMORY=0, right after the bench touched and freed 3x the checkpoint's size of memory: on a virtual
  machine that hands free memory back to the host (virtio-balloon free page reporting), a page the guest has not
  used for a few seconds costs a host fault on its next first use, and a route that happens to run right after
  another route freed its page cache would otherwise get cheap pages that the next route does not. The smallest
  size then gets "where verification's time goes": that first-use cost, the verify pass alone (`ckptd verify`
  of source and output, both cached), and reading the same bytes from the page cache (`dd`).
- yield: a `dd iflag=direct` reader of a separate 2 GiB file, alone and while ckptd converts 4 GiB, with and
  without `--nice`; BENCH_IOSCHED ("bfq", or "mq-deadline bfq" side by side; root) switches the disk's I/O
  scheduler for the part and back.
- concurrent: two 2 GiB conversions at once (two `ckptd convert` processes) against one after the other.
- big: one run each way at BENCH_BIG_GIB (default 20), only if the file system has more than BENCH_BIG_FREE_GIB
  (default 60) free; the data is deleted as soon as each step is done.

Environment: CKPTD (default .build/release/ckptd), ANCHOR (an older ckptd binary to compare with; rows are
skipped without it), BENCH_DIR (default ./bench-data), BENCH_REPORT (default BENCHMARKS.md). Writes
BENCH_DIR/bench.md and replaces, in BENCH_REPORT between the `bench:begin` and `bench:end` markers, the blocks of
the parts it ran (`bench:part NAME`); the other parts' blocks stay as they were.
"""

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CKPTD = os.environ.get("CKPTD", os.path.join(REPO, ".build", "release", "ckptd"))
ANCHOR = os.environ.get("ANCHOR", "")
DATA = os.environ.get("BENCH_DIR", os.path.join(REPO, "bench-data"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SIZES = [float(s) for s in os.environ.get("BENCH_SIZES", "1 4").split()]
PARTS = os.environ.get("BENCH_PARTS", "speed yield concurrent big").split()
BIG_GIB = float(os.environ.get("BENCH_BIG_GIB", "20"))
BIG_FREE_GIB = float(os.environ.get("BENCH_BIG_FREE_GIB", "60"))
BIG_SHARD_BYTES = int(float(os.environ.get("BENCH_BIG_SHARD_BYTES", "5e9")))
IOSCHED = os.environ.get("BENCH_IOSCHED", "")
YIELD_GIB = float(os.environ.get("BENCH_YIELD_GIB", "4"))
READER_GIB = int(os.environ.get("BENCH_READER_GIB", "2"))
PAIR_GIB = float(os.environ.get("BENCH_PAIR_GIB", "2"))
KEEP = os.environ.get("BENCH_KEEP", "") == "1"
WARM_MEMORY = os.environ.get("BENCH_WARM_MEMORY", "1") != "0"
PY = sys.executable
MIB = 1 << 20
GIB = 1 << 30
PAGE = os.sysconf("SC_PAGE_SIZE")
# Ratios to cp from this run's speed part ((size, label) -> median ratio), for the big part's comparison.
SPEED_RATIOS = {}

# ---------------------------------------------------------------------------------------------------------------
# Measuring


def timed(cmd: list) -> dict:
    """Runs cmd under /usr/bin/time -v; returns wall, cpu (user+sys) seconds and peak RSS in MiB."""
    proc = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    err = proc.stderr

    def field(name):
        m = re.search(re.escape(name) + r":\s*(.+)", err)
        return m.group(1).strip() if m else "0"

    wall_text = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    parts = [float(p) for p in wall_text.split(":")]
    wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    rss = int(field("Maximum resident set size (kbytes)")) / 1024
    return {"wall": wall, "cpu": cpu, "rss": rss}


def files_in(folder: str) -> list:
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))]


def resident_bytes(paths) -> int:
    """Bytes of these files in the page cache (`fincore --bytes`)."""
    paths = [p for p in paths if os.path.isfile(p) and os.path.getsize(p) > 0]
    if not paths:
        return 0
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES"] + paths,
                         capture_output=True, text=True, check=True).stdout
    return sum(int(line) for line in out.split())


def make_cold(folder: str):
    """Writes back and drops every file of `folder` from the page cache."""
    for path in files_in(folder):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def touch_memory(count: int) -> float:
    """Writes `count` bytes of new anonymous memory and frees it again; returns the seconds the writing took."""
    count = max(0, min(count, available_bytes() - 2 * GIB))
    start = time.monotonic()
    block = np.ones(count, dtype=np.uint8)
    took = time.monotonic() - start
    del block
    return took


def warm_memory(size_bytes: int):
    """Puts every route on the same footing on a virtual machine whose host takes back what the guest leaves free
    (see the module docstring): 3x the checkpoint's bytes of memory were just used, so that the page cache the route
    grows comes from recently used pages."""
    if WARM_MEMORY:
        touch_memory(3 * size_bytes)


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(p) for p in files_in(folder) if not p.endswith(".json"))


def fresh(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def compilers() -> int:
    """Other people's compilers running now (swift-frontend, clang, ld): the machine's other load."""
    out = subprocess.run(["ps", "-eo", "comm"], capture_output=True, text=True).stdout.split()
    return sum(1 for name in out if name in ("swift-frontend", "swift-build", "clang", "clang++", "ld.gold", "ld"))


def spread(values, fmt="{:.2f}") -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def free_gib(path: str) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / GIB


# ---------------------------------------------------------------------------------------------------------------
# Data


def generate(base: str, size: float):
    if not os.path.exists(os.path.join(base, "bin-sharded")):
        print(f"bench: generating {size:g} GiB checkpoints in {base}", flush=True)
        subprocess.run([PY, os.path.join(HERE, "gen.py"), base, str(size)], check=True)


def write_safetensors_shards(folder: str, size_gib: float, shard_bytes: int = 5_000_000_000) -> int:
    """A sharded safetensors checkpoint of 16 MiB F32 matrices (random), streamed to disk in pieces so that the
    generator stays small at any size: transformers' layout (5 GB shards, index)."""
    import json
    import struct

    os.makedirs(folder, exist_ok=True)
    matrix = 16 * MIB
    count = int(size_gib * GIB) // matrix
    per_shard = max(1, shard_bytes // matrix)
    shards = [list(range(i, min(i + per_shard, count))) for i in range(0, count, per_shard)]
    rng = np.random.default_rng(0)
    block = rng.standard_normal(matrix // 4, dtype=np.float32)
    weight_map = {}
    for number, names in enumerate(shards):
        fname = f"model-{number + 1:05d}-of-{len(shards):05d}.safetensors"
        header = {"__metadata__": {"format": "pt"}}
        for j, i in enumerate(names):
            name = f"model.layers.{i}.mlp.up_proj.weight"
            header[name] = {"dtype": "F32", "shape": [1024, 4096], "data_offsets": [j * matrix, (j + 1) * matrix]}
            weight_map[name] = fname
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(os.path.join(folder, fname), "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for i in names:
                block[i % block.size] += 1.0  # every matrix differs
                f.write(block.tobytes())
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": count * matrix}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    return count * matrix


# ---------------------------------------------------------------------------------------------------------------
# Part 1: speed, page cache, memory


def cp_cmd(src: str, out: str) -> list:
    files = files_in(src)
    outs = [os.path.join(out, os.path.basename(f)) for f in files]
    return ["sh", "-c", "cp " + " ".join(files) + " " + out + " && sync " + " ".join(outs)]


def convert_cmd(binary, src, to, out, *extra):
    return [binary, "convert", src, "--to", to, "--out", fresh(out), *extra]


def speed_rows(size: float) -> list:
    base = os.path.join(DATA, f"{size:g}g")
    generate(base, size)
    out = os.path.join(DATA, "out")
    rows = []
    for layout in ("", "-sharded"):
        st, bn = os.path.join(base, "st" + layout), os.path.join(base, "bin" + layout)
        tag = "sharded" if layout else "single"
        for src, to, bytes_kind, direction, py in ((st, "bin", "safetensors", "st->bin", "st2bin"),
                                                    (bn, "safetensors", ".bin", "bin->st", "bin2st")):
            rows.append((f"cp + fsync ({bytes_kind} bytes, {tag})", lambda src=src: cp_cmd(src, fresh(out)), src))
            for binary, who in ((CKPTD, "ckptd"), (ANCHOR, "anchor")):
                if not binary:
                    continue
                rows += [
                    (f"{who} {direction}, no verify ({tag})",
                     lambda b=binary, src=src, to=to: convert_cmd(b, src, to, out, "--no-verify"), src),
                    (f"{who} {direction}, verify ({tag})",
                     lambda b=binary, src=src, to=to: convert_cmd(b, src, to, out), src),
                ]
            rows.append((f"ckptd {direction}, bf16 cast ({tag})",
                         lambda src=src, to=to: convert_cmd(CKPTD, src, to, out, "--dtype", "bf16", "--no-verify"),
                         src))
            if size <= 1:
                rows.append((f"python {'load_file + torch.save' if py == 'st2bin' else 'torch.load + save_file'} "
                             f"({tag})", lambda src=src, py=py: [PY, os.path.join(HERE, "python_route.py"), py, src,
                                                                   fresh(out)], src))
    return rows


def part_speed() -> list:
    out = os.path.join(DATA, "out")
    lines = []
    for size in SIZES:
        rows = speed_rows(size)
        samples = {label: [] for label, _, _ in rows}
        cached = {label: [] for label, _, _ in rows}
        before = load()
        for run in range(RUNS):
            for label, make_cmd, src in rows:
                make_cold(src)
                cmd = make_cmd()
                warm_memory(folder_bytes(src))
                samples[label].append(timed(cmd))
                cached[label].append(resident_bytes(files_in(src) + files_in(out)) / MIB)
                print(f"{size:g} GiB run {run + 1}  {label:42s} {samples[label][-1]['wall']:7.2f} s  "
                      f"cached {cached[label][-1]:7.1f} MiB", flush=True)
        lines += [f"### {size:g} GiB, {RUNS} runs per row (median and range), load average {before} -> {load()}", "",
                  "| what | wall s | CPU s | peak RSS MiB | GiB/s | ratio to cp | left cached MiB |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        cp_by_src = {src: statistics.median(s["wall"] for s in samples[label]) for label, _, src in rows
                     if label.startswith("cp ")}
        for label, _, src in rows:
            walls = [s["wall"] for s in samples[label]]
            gib = folder_bytes(src) / GIB
            ratio = statistics.median(walls) / cp_by_src[src]
            SPEED_RATIOS[(size, label)] = ratio
            lines.append(f"| {label} | {spread(walls)} | {spread([s['cpu'] for s in samples[label]])} | "
                         f"{spread([s['rss'] for s in samples[label]], '{:.1f}')} | "
                         f"{gib / statistics.median(walls):.2f} | {ratio:.2f}x | "
                         f"{spread(cached[label], '{:.0f}')} |")
        lines.append("")
        lines += paired_ratios(rows, samples, cp_by_src)
        if size == min(SIZES):
            lines += verification_costs(size)
        needed = (size == YIELD_GIB and "yield" in PARTS) or (size == PAIR_GIB and "concurrent" in PARTS)
        if not KEEP and not needed:
            shutil.rmtree(os.path.join(DATA, f"{size:g}g"), ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return lines


def dd_cached(paths) -> float:
    """Seconds to read `paths` (already in the page cache) through an 8 MiB buffer."""
    start = time.monotonic()
    for path in paths:
        subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=8M"], check=True, capture_output=True)
    return time.monotonic() - start


def verification_costs(size: float) -> list:
    """Where verification's time goes: what the verify pass does (re-read source and output from the page cache
    and compare them) measured alone, the floor of that re-read, and the first-use cost of memory on this machine
    that a pass keeping pages cached can run into."""
    base = os.path.join(DATA, f"{size:g}g")
    out = os.path.join(DATA, "out")
    lines = [f"#### Where verification's time goes ({size:g} GiB, single file, {RUNS} runs, median and range)", "",
             "| what | seconds |", "| --- | ---: |"]
    idle_touch, reused_touch = [], []
    for _ in range(RUNS):
        time.sleep(10)  # long enough for the guest to report its free pages to the host
        idle_touch.append(touch_memory(GIB))
        reused_touch.append(touch_memory(GIB))
    lines.append(f"| write 1 GiB of memory the guest left free for 10 s | {spread(idle_touch)} |")
    lines.append(f"| the same right after (pages just freed) | {spread(reused_touch)} |")
    for src_name, to in (("st", "bin"), ("bin", "safetensors")):
        src = os.path.join(base, src_name)
        subprocess.run(convert_cmd(CKPTD, src, to, out, "--no-verify"), check=True, capture_output=True)
        both = files_in(src) + files_in(out)
        verify, read = [], []
        for _ in range(RUNS):
            dd_cached(both)  # both cached
            start = time.monotonic()
            subprocess.run([CKPTD, "verify", src, out], check=True, capture_output=True)
            verify.append(time.monotonic() - start)
            read.append(dd_cached(both))
        direction = "st->bin" if to == "bin" else "bin->st"
        lines.append(f"| {direction}: `ckptd verify` of source and output, both cached (the verify pass alone) | "
                     f"{spread(verify)} |")
        lines.append(f"| {direction}: `dd` of the same {folder_bytes(src) * 2 / GIB:.1f} GiB from the page cache | "
                     f"{spread(read)} |")
        make_cold(src)
        shutil.rmtree(out, ignore_errors=True)
    return lines + [""]


def paired_ratios(rows, samples, cp_by_src) -> list:
    """Ratios of the verify rows to cp and to the anchor, run by run (pairs measured back to back)."""
    out = []
    cp_label = {src: label for label, _, src in rows if label.startswith("cp ")}
    for label, _, src in rows:
        if not label.startswith("ckptd") or "verify (" not in label or "no verify" in label:
            continue
        cp = samples[cp_label[src]]
        ratios = [s["wall"] / c["wall"] for s, c in zip(samples[label], cp)]
        text = f"- {label}: {spread(ratios)}x cp + fsync, run by run"
        anchor = samples.get(label.replace("ckptd", "anchor", 1))
        if anchor:
            text += f"; {spread([s['wall'] / a['wall'] for s, a in zip(samples[label], anchor)])}x the anchor"
        no_verify = samples.get(label.replace("verify (", "no verify ("))
        if no_verify:
            text += f"; {spread([s['wall'] / n['wall'] for s, n in zip(samples[label], no_verify)])}x no verify"
        out.append(text)
    return out + [""]


# ---------------------------------------------------------------------------------------------------------------
# Part 2: yielding to a job beside the conversion


def dd_read(path: str) -> float:
    """Reads `path` with O_DIRECT (no page cache: every byte comes from the disk); returns MB/s."""
    start = time.monotonic()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=4M", "iflag=direct", "status=none"], check=True)
    return os.path.getsize(path) / 1e6 / (time.monotonic() - start)


def scheduler_file(path: str):
    """/sys/block/DEV/queue/scheduler of the disk holding `path` (the whole disk for a partition); None when
    there is none (tmpfs, overlay, a device mapper stack without one)."""
    st = os.stat(path)
    sysdir = os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    for folder in (sysdir, os.path.dirname(sysdir)):
        candidate = os.path.join(folder, "queue", "scheduler")
        if os.path.exists(candidate):
            return candidate
    return None


def current_scheduler(sched_file) -> str:
    if not sched_file:
        return "?"
    text = open(sched_file).read()
    return text[text.index("[") + 1:text.index("]")] if "[" in text else text.strip()


def set_scheduler(sched_file, name: str):
    with open(sched_file, "w") as f:
        f.write(name)
    if current_scheduler(sched_file) != name:
        raise RuntimeError(f"{sched_file}: could not switch to {name}")


def part_yield() -> list:
    """A reader of a separate file alone and beside a conversion, with and without --nice; with BENCH_IOSCHED
    (e.g. "mq-deadline bfq", root) once under each I/O scheduler of the disk, which is switched back afterwards."""
    base = os.path.join(DATA, f"{YIELD_GIB:g}g")
    generate(base, YIELD_GIB)
    src = os.path.join(base, "st")
    reader = os.path.join(DATA, "reader")
    if not os.path.exists(reader) or os.path.getsize(reader) != READER_GIB * GIB:
        subprocess.run(["dd", "if=/dev/urandom", f"of={reader}", "bs=4M", f"count={READER_GIB * 256}", "conv=fsync",
                        "status=none"], check=True)
    out = os.path.join(DATA, "out")
    sched_file = scheduler_file(DATA)
    original = current_scheduler(sched_file)
    schedulers = IOSCHED.split() or [original]
    if IOSCHED and not sched_file:
        raise RuntimeError(f"BENCH_IOSCHED: no I/O scheduler file for the disk under {DATA}")
    before = load()
    results = {}
    try:
        for sched in schedulers:
            if IOSCHED:
                set_scheduler(sched_file, sched)
            alone, during = [], {"plain": [], "nice": []}
            conversion = {"plain": [], "nice": []}
            for run in range(RUNS):
                alone.append(dd_read(reader))
                # Alternate which goes first: the reader's file and the host's caches (a VM disk) warm run by run.
                for mode in (("plain", "nice") if run % 2 == 0 else ("nice", "plain")):
                    make_cold(src)
                    cmd = convert_cmd(CKPTD, src, "bin", out) + (["--nice"] if mode == "nice" else [])
                    start = time.monotonic()
                    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    time.sleep(1.0)  # let the conversion get going
                    rate = dd_read(reader)
                    ended_first = proc.poll() is not None
                    proc.wait()
                    conversion[mode].append(time.monotonic() - start)
                    during[mode].append(rate)
                    print(f"yield {sched} run {run + 1}: alone {alone[-1]:.0f} MB/s, during {mode} conversion "
                          f"{rate:.0f} MB/s{' (conversion ended first)' if ended_first else ''}, conversion "
                          f"{conversion[mode][-1]:.1f} s", flush=True)
            results[sched] = (alone, during, conversion)
    finally:
        if IOSCHED and current_scheduler(sched_file) != original:
            set_scheduler(sched_file, original)
    shutil.rmtree(out, ignore_errors=True)
    if not KEEP:
        shutil.rmtree(base, ignore_errors=True)
        os.remove(reader)
    lines = [f"### A {READER_GIB} GiB `dd iflag=direct` reader beside a {YIELD_GIB:g} GiB st->bin conversion (verify "
             f"on), {RUNS} runs, load average {before} -> {load()}", "",
             "| I/O scheduler | reader | MB/s | ratio to alone (run by run) | conversion s |",
             "| --- | --- | ---: | ---: | ---: |"]
    for sched, (alone, during, conversion) in results.items():
        lines.append(f"| {sched} | alone | {spread(alone, '{:.0f}')} | 1.00 | - |")
        for mode, name in (("plain", "during `ckptd convert`"), ("nice", "during `ckptd convert --nice`")):
            ratios = [d / a for d, a in zip(during[mode], alone)]
            lines.append(f"| {sched} | {name} | {spread(during[mode], '{:.0f}')} | {spread(ratios)} | "
                         f"{spread(conversion[mode], '{:.1f}')} |")
    return lines + ["", f"Disk scheduler file {sched_file or '-'}: {original} before the part"
                    + (f", switched to each of {', '.join(schedulers)} (BENCH_IOSCHED) and back." if IOSCHED else
                       " (BENCH_IOSCHED=\"mq-deadline bfq\" measures under each)."), ""]


# ---------------------------------------------------------------------------------------------------------------
# Part 3: two conversions at once


def part_concurrent() -> list:
    base = os.path.join(DATA, f"{PAIR_GIB:g}g")
    generate(base, PAIR_GIB)
    second = os.path.join(DATA, f"{PAIR_GIB:g}g-second")
    if not os.path.exists(second):
        shutil.copytree(os.path.join(base, "st"), second)
    first = os.path.join(base, "st")
    outs = [os.path.join(DATA, "out-a"), os.path.join(DATA, "out-b")]
    together, apart = [], []
    before = load()
    for run in range(RUNS):
        for mode in ("apart", "together"):
            make_cold(first)
            make_cold(second)
            cmds = [convert_cmd(CKPTD, s, "bin", o) for s, o in zip((first, second), outs)]
            start = time.monotonic()
            if mode == "apart":
                for cmd in cmds:
                    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            else:
                procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for cmd in cmds]
                assert all(p.wait() == 0 for p in procs)
            (apart if mode == "apart" else together).append(time.monotonic() - start)
        print(f"concurrent run {run + 1}: one after the other {apart[-1]:.1f} s, at once {together[-1]:.1f} s",
              flush=True)
    for o in outs + ([] if KEEP else [base, second]):
        shutil.rmtree(o, ignore_errors=True)
    ratios = [t / a for t, a in zip(together, apart)]
    return [f"### Two {PAIR_GIB:g} GiB st->bin conversions (verify on), {RUNS} runs, load average {before} -> {load()}", "",
            "| how | total wall s | ratio |", "| --- | ---: | ---: |",
            f"| one after the other | {spread(apart)} | 1.00 |",
            f"| at once (two processes, like `workers = 2`) | {spread(together)} | {spread(ratios)} |", ""]


# ---------------------------------------------------------------------------------------------------------------
# Part 4: real sizes


def part_big() -> list:
    """Issue 14 item 3: one run each way at BIG_GIB, sharded as transformers shards it (BIG_SHARD_BYTES, 5 GB,
    with the index), verification on, cold sources; each direction against `cp` + fsync of its own source bytes,
    peak RSS against 64 MiB, and the ratio to cp against the 1 GiB sharded rows of this run's speed part. At most
    two copies of the data exist at once (2 x BIG_GIB); everything is deleted at the end, also on failure."""
    free = free_gib(DATA)
    if free <= BIG_FREE_GIB:
        return [f"### {BIG_GIB:g} GiB: not run ({free:.0f} GiB free, needs more than {BIG_FREE_GIB:g})", ""]
    root = os.path.join(DATA, "big")
    shutil.rmtree(root, ignore_errors=True)
    st, bn, back = (os.path.join(root, n) for n in ("st", "bin", "back"))
    cp_out = os.path.join(root, "cp")
    rows = []
    before = load()
    try:
        print(f"bench: generating {BIG_GIB:g} GiB sharded safetensors in {st}", flush=True)
        start = time.monotonic()
        total = write_safetensors_shards(st, BIG_GIB, BIG_SHARD_BYTES)
        print(f"bench: generated {total / GIB:.1f} GiB in {time.monotonic() - start:.0f} s", flush=True)
        layout_st = [os.path.basename(p) for p in files_in(st)]
        steps = (("cp + fsync (safetensors bytes)", st, lambda: cp_cmd(st, fresh(cp_out)), None),
                 ("ckptd st->bin, verify", st, lambda: convert_cmd(CKPTD, st, "bin", bn), bn),
                 ("cp + fsync (.bin bytes)", bn, lambda: cp_cmd(bn, fresh(cp_out)), None),
                 ("ckptd bin->st, verify", bn, lambda: convert_cmd(CKPTD, bn, "safetensors", back), back))
        cached = {}
        for label, src, make_cmd, out in steps:
            make_cold(src)
            result = timed(make_cmd())
            result["gib"] = folder_bytes(src) / GIB
            rows.append((label, result))
            print(f"big: {label} {result['wall']:.1f} s, peak RSS {result['rss']:.1f} MiB", flush=True)
            if out is not None:
                cached[label] = resident_bytes(files_in(src) + files_in(out)) / MIB
                result["outputs"] = [os.path.basename(p) for p in files_in(out)]
            shutil.rmtree(cp_out, ignore_errors=True)
            if label.startswith("ckptd st->bin"):
                shutil.rmtree(st)  # two copies at most: the .bin and its cp, then the .bin and the way back
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = [f"### {BIG_GIB:g} GiB sharded ({len(layout_st) - 1} safetensors shards of at most "
             f"{BIG_SHARD_BYTES / 1e9:g} GB + index, as `save_pretrained` shards), one run each way, verification "
             f"on, cold source, load average {before} -> {load()}", "",
             "| what | wall s | CPU s | peak RSS MiB | GiB/s | ratio to cp | same ratio in the speed part (sharded, this run) "
             "| left cached MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    cp = None
    small = min(SIZES) if "speed" in PARTS and SIZES else None
    for label, r in rows:
        head = f"| {label} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss']:.1f} | {r['gib'] / r['wall']:.2f} |"
        if label.startswith("cp "):
            cp = r["wall"]  # each ckptd row follows the cp of its own source bytes
            lines.append(f"{head} 1.00x | - | - |")
            continue
        ref = "-"
        if small is not None:
            ratio = SPEED_RATIOS.get((small, label.replace(", verify", ", verify (sharded)")))
            ref = f"{ratio:.2f}x ({small:g} GiB)" if ratio is not None else "-"
        lines.append(f"{head} {r['wall'] / cp:.2f}x | {ref} | {cached.get(label, 0):.0f} |")
    peak = max(r["rss"] for label, r in rows if label.startswith("ckptd"))
    outputs = {label: r.get("outputs", []) for label, r in rows if label.startswith("ckptd")}
    return lines + ["", f"- peak RSS of the ckptd rows: {peak:.1f} MiB ({'met' if peak <= 64 else 'NOT met'}: at most "
                    f"64 MiB)",
                    f"- outputs: " + "; ".join(f"{label}: {len(names)} files ({', '.join(names)})"
                                               for label, names in outputs.items()),
                    "- left cached: `fincore` of that step's source and output files after it",
                    "- command: `BENCH_PARTS=big" + (f" BENCH_BIG_GIB={BIG_GIB:g}" if BIG_GIB != 20 else "") +
                    (f" BENCH_BIG_SHARD_BYTES={BIG_SHARD_BYTES}" if BIG_SHARD_BYTES != 5_000_000_000 else "") +
                    " make bench`" + ("" if small is not None else " (the 1 GiB column needs the speed part in the "
                                      "same run: `BENCH_PARTS=\"speed big\"`)"), ""]


# ---------------------------------------------------------------------------------------------------------------


PART_ORDER = ("speed", "yield", "concurrent", "big")


def part_blocks(region: str) -> dict:
    """The part blocks (`<!-- bench:part NAME -->` ... `<!-- bench:part-end NAME -->`) of the bench region."""
    return {m.group(1): m.group(0) for m in
            re.finditer(r"<!-- bench:part (\w+) -->\n.*?<!-- bench:part-end \1 -->", region, re.S)}


def main():
    os.makedirs(DATA, exist_ok=True)
    commit = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    anchor = "none"
    if ANCHOR:
        anchor = os.environ.get("ANCHOR_COMMIT", ANCHOR)
    cpu_model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                      if line.startswith("model name")), "unknown")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    head = [f"Produced by `make bench`: {platform.system()} {platform.release()}, {os.cpu_count()} cores "
            f"({cpu_model}), {mem:.0f} GiB RAM. Every run starts with a cold source (fsync + "
            "POSIX_FADV_DONTNEED); every route that writes makes its output durable (`cp` is followed by `sync` "
            "of the copies, ckptd fsyncs each file, the Python routes fsync). \"left cached\" is what `fincore` "
            "finds of the source and output files after the run. Each part below says when it ran and against "
            "which build (`BENCH_PARTS` runs some parts and keeps the others' last figures).", ""]
    blocks = {}
    for part, fn in (("speed", part_speed), ("yield", part_yield), ("concurrent", part_concurrent),
                     ("big", part_big)):
        if part in PARTS:
            stamp = (f"Part `{part}`: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, release build of "
                     f"{commit}, anchor {anchor}; load average at its start {load()}, {compilers()} compiler "
                     "processes of other sessions running.")
            body = fn()
            blocks[part] = "\n".join([f"<!-- bench:part {part} -->", stamp, ""] + body + [f"<!-- bench:part-end {part} -->"])
            # Written after every part, so that an interrupted run keeps what it measured.
            with open(os.path.join(DATA, "bench.md"), "w") as f:
                f.write("\n".join(head + [blocks[p] for p in PART_ORDER if p in blocks]) + "\n")
            print("\n".join(body[-12:]), flush=True)
    path = os.environ.get("BENCH_REPORT", os.path.join(REPO, "BENCHMARKS.md"))
    current = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    old = current[current.index(begin):current.index(end)] if begin in current and end in current else ""
    kept = part_blocks(old)
    kept.update(blocks)
    text = "\n".join(head + [kept[p] + "\n" for p in PART_ORDER if p in kept]) + "\n"
    if begin in current and end in current:
        current = current[:current.index(begin) + len(begin)] + "\n" + text + current[current.index(end):]
    else:
        current += f"\n{begin}\n{text}{end}\n"
    with open(path, "w") as f:
        f.write(current)
    print(text)


if __name__ == "__main__":
    main()
