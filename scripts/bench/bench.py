"""`make bench`: ckptd against cp + fsync, the Python converters and an anchor build of ckptd (an older commit),
at real sizes, and what a conversion does to a job beside it.

Parts (BENCH_PARTS, default all of "speed yield concurrent big"):
- speed: every route at each of BENCH_SIZES (GiB, default "1 4"), single file and sharded, both directions,
  BENCH_RUNS runs (default 3) interleaved row by row so that the machine's other load hits every row alike;
  median and range of wall time, CPU time, peak RSS, and the MiB of source + output left in the page cache.
  Every run starts with a cold source (fsync + POSIX_FADV_DONTNEED of every source file).
- yield: a `dd iflag=direct` reader of a separate 2 GiB file, alone and while ckptd converts 4 GiB, with and
  without `--nice`.
- concurrent: two 2 GiB conversions at once (two `ckptd convert` processes) against one after the other.
- big: one run each way at BENCH_BIG_GIB (default 20), only if the file system has more than BENCH_BIG_FREE_GIB
  (default 60) free; the data is deleted as soon as each step is done.

Environment: CKPTD (default .build/release/ckptd), ANCHOR (an older ckptd binary to compare with; rows are
skipped without it), BENCH_DIR (default ./bench-data). Writes BENCH_DIR/bench.md and replaces the part of
BENCHMARKS.md between the `bench:begin` and `bench:end` markers.
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
YIELD_GIB = float(os.environ.get("BENCH_YIELD_GIB", "4"))
READER_GIB = int(os.environ.get("BENCH_READER_GIB", "2"))
PAIR_GIB = float(os.environ.get("BENCH_PAIR_GIB", "2"))
KEEP = os.environ.get("BENCH_KEEP", "") == "1"
PY = sys.executable
MIB = 1 << 20
GIB = 1 << 30
PAGE = os.sysconf("SC_PAGE_SIZE")

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
            lines.append(f"| {label} | {spread(walls)} | {spread([s['cpu'] for s in samples[label]])} | "
                         f"{spread([s['rss'] for s in samples[label]], '{:.1f}')} | "
                         f"{gib / statistics.median(walls):.2f} | {ratio:.2f}x | "
                         f"{spread(cached[label], '{:.0f}')} |")
        lines.append("")
        lines += paired_ratios(rows, samples, cp_by_src)
        needed = (size == YIELD_GIB and "yield" in PARTS) or (size == PAIR_GIB and "concurrent" in PARTS)
        if not KEEP and not needed:
            shutil.rmtree(os.path.join(DATA, f"{size:g}g"), ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return lines


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


def part_yield() -> list:
    base = os.path.join(DATA, f"{YIELD_GIB:g}g")
    generate(base, YIELD_GIB)
    src = os.path.join(base, "st")
    reader = os.path.join(DATA, "reader")
    if not os.path.exists(reader) or os.path.getsize(reader) != READER_GIB * GIB:
        subprocess.run(["dd", "if=/dev/urandom", f"of={reader}", "bs=4M", f"count={READER_GIB * 256}", "conv=fsync",
                        "status=none"], check=True)
    out = os.path.join(DATA, "out")
    alone, during = [], {"plain": [], "nice": []}
    conversion = {"plain": [], "nice": []}
    before = load()
    for run in range(RUNS):
        alone.append(dd_read(reader))
        for mode in ("plain", "nice"):
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
            print(f"yield run {run + 1}: alone {alone[-1]:.0f} MB/s, during {mode} conversion {rate:.0f} MB/s"
                  f"{' (conversion ended first)' if ended_first else ''}, conversion {conversion[mode][-1]:.1f} s",
                  flush=True)
    shutil.rmtree(out, ignore_errors=True)
    if not KEEP:
        shutil.rmtree(base, ignore_errors=True)
        os.remove(reader)
    med = statistics.median(alone)
    lines = [f"### A {READER_GIB} GiB `dd iflag=direct` reader beside a {YIELD_GIB:g} GiB st->bin conversion (verify "
             f"on), {RUNS} runs, "
             f"load average {before} -> {load()}", "",
             "| reader | MB/s | ratio to alone | conversion s |", "| --- | ---: | ---: | ---: |",
             f"| alone | {spread(alone, '{:.0f}')} | 1.00 | - |"]
    for mode, name in (("plain", "during `ckptd convert`"), ("nice", "during `ckptd convert --nice`")):
        ratios = [d / a for d, a in zip(during[mode], alone)]
        lines.append(f"| {name} | {spread(during[mode], '{:.0f}')} | {spread(ratios)} | "
                     f"{spread(conversion[mode], '{:.1f}')} |")
    return lines + ["", f"Reader alone, median {med:.0f} MB/s. I/O scheduler: "
                    f"{open('/sys/block/vda/queue/scheduler').read().strip() if os.path.exists('/sys/block/vda') else '?'}.",
                    ""]


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
    free = free_gib(DATA)
    if free <= BIG_FREE_GIB:
        return [f"### {BIG_GIB:g} GiB: not run ({free:.0f} GiB free, needs more than {BIG_FREE_GIB:g})", ""]
    root = os.path.join(DATA, "big")
    shutil.rmtree(root, ignore_errors=True)
    st = os.path.join(root, "st")
    print(f"bench: generating {BIG_GIB:g} GiB sharded safetensors in {st}", flush=True)
    write_safetensors_shards(st, BIG_GIB)
    rows = []
    before = load()
    try:
        make_cold(st)
        rows.append(("cp + fsync (safetensors bytes)", timed(cp_cmd(st, fresh(os.path.join(root, "cp"))))))
        shutil.rmtree(os.path.join(root, "cp"))
        bn = os.path.join(root, "bin")
        make_cold(st)
        rows.append(("ckptd st->bin, verify", timed(convert_cmd(CKPTD, st, "bin", bn))))
        cached = resident_bytes(files_in(st) + files_in(bn)) / MIB
        shutil.rmtree(st)
        make_cold(bn)
        back = os.path.join(root, "back")
        rows.append(("ckptd bin->st, verify", timed(convert_cmd(CKPTD, bn, "safetensors", back))))
        cached_back = resident_bytes(files_in(bn) + files_in(back)) / MIB
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cp = rows[0][1]["wall"]
    lines = [f"### {BIG_GIB:g} GiB sharded (5 GB shards), one run each, cold source, load average {before} -> "
             f"{load()}", "", "| what | wall s | CPU s | peak RSS MiB | ratio to cp |", "| --- | ---: | ---: | ---: | ---: |"]
    for label, r in rows:
        lines.append(f"| {label} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss']:.1f} | {r['wall'] / cp:.2f}x |")
    return lines + ["", f"Left in the page cache afterwards: {cached:.0f} MiB (st->bin), {cached_back:.0f} MiB (bin->st).",
                    ""]


# ---------------------------------------------------------------------------------------------------------------


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
    head = [f"Produced by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, release build of "
            f"{commit}, anchor {anchor}: {platform.system()} {platform.release()}, {os.cpu_count()} cores "
            f"({cpu_model}), {mem:.0f} GiB RAM. Load average at the start {load()}, {compilers()} compiler "
            "processes of other sessions running. Every run starts with a cold source (fsync + "
            "POSIX_FADV_DONTNEED); every route that writes makes its output durable (`cp` is followed by `sync` "
            "of the copies, ckptd fsyncs each file, the Python routes fsync). \"left cached\" is what `fincore` "
            "finds of the source and output files after the run.", ""]
    body = []
    for part, fn in (("speed", part_speed), ("yield", part_yield), ("concurrent", part_concurrent),
                     ("big", part_big)):
        if part in PARTS:
            body += fn()
            # Written after every part, so that an interrupted run keeps what it measured.
            with open(os.path.join(DATA, "bench.md"), "w") as f:
                f.write("\n".join(head + body) + "\n")
            print("\n".join(body[-12:]), flush=True)
    text = "\n".join(head + body) + "\n"
    path = os.path.join(REPO, "BENCHMARKS.md")
    current = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin in current and end in current:
        current = current[:current.index(begin) + len(begin)] + "\n" + text + current[current.index(end):]
    else:
        current += f"\n{begin}\n{text}{end}\n"
    with open(path, "w") as f:
        f.write(current)
    print(text)


if __name__ == "__main__":
    main()
