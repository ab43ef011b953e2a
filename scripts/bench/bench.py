"""`make bench`: ckptd against cp and the Python converters, wall time, CPU time and peak RSS, medians.

Environment: BENCH_SIZES (GiB, default "1 4"), BENCH_RUNS (default 3), BENCH_DIR (default ./bench-data),
CKPTD (default .build/release/ckptd). Writes BENCHMARKS.md and prints the table.
"""

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CKPTD = os.environ.get("CKPTD", os.path.join(REPO, ".build", "release", "ckptd"))
DATA = os.environ.get("BENCH_DIR", os.path.join(REPO, "bench-data"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SIZES = [float(s) for s in os.environ.get("BENCH_SIZES", "1 4").split()]
PY = sys.executable


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


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if not f.endswith(".json"))


def fresh(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def cp_cmd(src: str, out: str) -> list:
    files = [os.path.join(src, f) for f in sorted(os.listdir(src))]
    outs = [os.path.join(out, os.path.basename(f)) for f in files]
    script = "cp " + " ".join(files) + " " + out + " && sync " + " ".join(outs)
    return ["sh", "-c", script]


def rows_for(size: float) -> list:
    base = os.path.join(DATA, f"{size:g}g")
    if not os.path.exists(os.path.join(base, "bin-sharded")):
        print(f"bench: generating {size:g} GiB checkpoints in {base}", flush=True)
        subprocess.run([PY, os.path.join(HERE, "gen.py"), base, str(size)], check=True)
    out = os.path.join(DATA, "out")
    rows = []
    for layout in ("", "-sharded"):
        st, bn = os.path.join(base, "st" + layout), os.path.join(base, "bin" + layout)
        tag = "sharded" if layout else "single"
        rows += [
            (f"cp + fsync (safetensors bytes, {tag})", lambda st=st: cp_cmd(st, fresh(out)), st),
            (f"ckptd st->bin, no verify ({tag})", lambda st=st: [CKPTD, "convert", st, "--to", "bin", "--no-verify", "--out", fresh(out)], st),
            (f"ckptd st->bin, verify ({tag})", lambda st=st: [CKPTD, "convert", st, "--to", "bin", "--out", fresh(out)], st),
            (f"ckptd st->bin, bf16 cast ({tag})", lambda st=st: [CKPTD, "convert", st, "--to", "bin", "--dtype", "bf16", "--no-verify", "--out", fresh(out)], st),
            (f"python load_file + torch.save ({tag})", lambda st=st: [PY, os.path.join(HERE, "python_route.py"), "st2bin", st, fresh(out)], st),
            (f"cp + fsync (.bin bytes, {tag})", lambda bn=bn: cp_cmd(bn, fresh(out)), bn),
            (f"ckptd bin->st, no verify ({tag})", lambda bn=bn: [CKPTD, "convert", bn, "--to", "safetensors", "--no-verify", "--out", fresh(out)], bn),
            (f"ckptd bin->st, verify ({tag})", lambda bn=bn: [CKPTD, "convert", bn, "--to", "safetensors", "--out", fresh(out)], bn),
            (f"ckptd bin->st, bf16 cast ({tag})", lambda bn=bn: [CKPTD, "convert", bn, "--to", "safetensors", "--dtype", "bf16", "--no-verify", "--out", fresh(out)], bn),
            (f"python torch.load + save_file ({tag})", lambda bn=bn: [PY, os.path.join(HERE, "python_route.py"), "bin2st", bn, fresh(out)], bn),
        ]
    return rows


def main():
    results = []
    for size in SIZES:
        for label, make_cmd, src in rows_for(size):
            samples = [timed(make_cmd()) for _ in range(RUNS)]
            med = {k: statistics.median(s[k] for s in samples) for k in ("wall", "cpu", "rss")}
            gib = folder_bytes(src) / (1 << 30)
            results.append((f"{size:g} GiB", label, med, gib))
            print(f"{size:g} GiB  {label:45s} wall {med['wall']:7.2f} s  cpu {med['cpu']:7.2f} s  "
                  f"rss {med['rss']:8.1f} MiB  {gib / med['wall']:5.2f} GiB/s", flush=True)
    shutil.rmtree(os.path.join(DATA, "out"), ignore_errors=True)
    write_markdown(results)


def targets(results):
    """The issue's targets as ratios within this run: one line per check, met or not."""
    by = {(size, label): (med, gib) for size, label, med, gib in results}
    out = ["## Targets (issue 6), ratios within this run", ""]

    def check(ok, text):
        out.append(f"- {'met' if ok else 'NOT met'}: {text}")

    sizes = sorted({size for size, _, _, _ in results}, key=lambda s: float(s.split()[0]))
    for size in sizes:
        for tag in ("single", "sharded"):
            for direction, bytes_kind, py in (("st->bin", "safetensors", "python load_file + torch.save"),
                                              ("bin->st", ".bin", "python torch.load + save_file")):
                cp = by.get((size, f"cp + fsync ({bytes_kind} bytes, {tag})"))
                if not cp:
                    continue
                cp_wall = cp[0]["wall"]
                python = by.get((size, f"{py} ({tag})"))
                for kind, limit in (("no verify", 1.3), ("verify", 2.0), ("bf16 cast", None)):
                    row = by.get((size, f"ckptd {direction}, {kind} ({tag})"))
                    if not row:
                        continue
                    med, gib = row
                    name = f"{size} {tag} {direction} {kind}"
                    if limit:
                        ratio = med["wall"] / cp_wall
                        check(ratio <= limit, f"{name}: {ratio:.2f}x cp (limit {limit}x)")
                    else:
                        rate = gib * (1 << 30) / 1e9 / med["cpu"] if med["cpu"] else 0
                        check(rate >= 1.0, f"{name}: {rate:.2f} GB/s of input per CPU second (limit 1 GB/s)")
                    if python:
                        check(med["wall"] < python[0]["wall"],
                              f"{name}: {med['wall']:.2f} s vs Python {python[0]['wall']:.2f} s")
    rss = [(size, label, med["rss"]) for size, label, med, _ in results if label.startswith("ckptd")]
    if rss:
        worst = max(rss, key=lambda r: r[2])
        check(worst[2] < 64, f"peak RSS of every ckptd row < 64 MiB (largest {worst[2]:.1f} MiB: {worst[0]} {worst[1]})")
        if len(sizes) > 1:
            small, large = sizes[0], sizes[-1]
            pairs = [(r, next((q for q in rss if q[0] == large and q[1] == r[1]), None)) for r in rss if r[0] == small]
            growth = max((q[2] - r[2] for r, q in pairs if q), default=0)
            check(growth < 4, f"peak RSS {large} vs {small}: grows by at most {growth:.1f} MiB")
    return out


def write_markdown(results):
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu_model}), {mem:.0f} GiB RAM, "
        f"{RUNS} runs per row, medians. Page cache warm (sources were just read or written). Every row writes "
        "durable output: `cp` is followed by `sync` of the copies, ckptd fsyncs each file before renaming it, "
        "the Python routes fsync their outputs.",
        "",
        "| size | what | wall s | CPU s | peak RSS MiB | GiB/s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for size, label, med, gib in results:
        lines.append(f"| {size} | {label} | {med['wall']:.2f} | {med['cpu']:.2f} | {med['rss']:.1f} | "
                     f"{gib / med['wall']:.2f} |")
    lines += [""] + targets(results)
    print("\n".join(targets(results)), flush=True)
    with open(os.path.join(REPO, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
        extra = os.path.join(DATA, "daemon-bench.md")
        if os.path.exists(extra):
            f.write("\n" + open(extra).read())


if __name__ == "__main__":
    main()
