"""`make bench`, distributed part (issue 12): consolidating GPT-2-small-shaped (124.4M parameters, 0.5 GB fp32)
ZeRO-2, ZeRO-3 and FSDP2 DCP checkpoints, ckptd against DeepSpeed's zero_to_fp32.py and torch's dcp_to_torch_save,
side by side in one run: wall seconds and peak RSS (medians of BENCH_RUNS runs, files warm in the page cache).
Every ckptd output is checked bit for bit against the Python tool's with `ckptd verify`.

The checkpoints are made once by scripts/bench/make_dist_bench.py (real Trainer + DeepSpeed / FSDP2 runs under
torchrun, 2 ranks, gloo; about 3 minutes and 8 GB of RAM) into BENCH_DIR/dist/. Replaces the
"## Distributed checkpoints" section of BENCHMARKS.md and prints the table.
"""

import glob
import os
import re
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from bench import CKPTD, DATA, PY, RUNS, timed  # noqa: E402

DIST = os.path.join(DATA, "dist")
OUT = os.path.join(DIST, "out")


def produce(case: str) -> str:
    folder = os.path.join(DIST, case)
    done = os.path.join(folder, ".complete")
    if not os.path.exists(done):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        env = dict(os.environ, OMP_NUM_THREADS="1", PATH=os.path.dirname(PY) + os.pathsep + os.environ["PATH"])
        print(f"bench: making the {case} checkpoint in {folder}", flush=True)
        with open(os.path.join(folder, "make.log"), "wb") as log:
            subprocess.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            os.path.join(HERE, "make_dist_bench.py"), case, folder],
                           check=True, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
        open(done, "w").close()
    if case == "fsdp2":
        return os.path.join(folder, "dcp")
    return sorted(glob.glob(os.path.join(folder, "checkpoint-*")))[-1]


def fresh(name: str) -> str:
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def rows():
    result = []
    for case in ("zero2", "zero3", "fsdp2"):
        src = produce(case)
        if case == "fsdp2":
            py = ("dcp_to_torch_save", lambda src=src: [PY, "-m", "torch.distributed.checkpoint.format_utils",
                                                        "dcp_to_torch", src, os.path.join(fresh("py"), "out.pt")])
            py_out = os.path.join(OUT, "py", "out.pt")
        else:
            py = ("zero_to_fp32.py", lambda src=src: [PY, os.path.join(src, "zero_to_fp32.py"), src, fresh("py")])
            py_out = os.path.join(OUT, "py", "pytorch_model.bin")
        result.append((case, src, [
            ("ckptd convert --to bin", lambda src=src: [CKPTD, "convert", src, "--to", "bin", "--consolidate",
                                                        "always", "--out", fresh("bin")], os.path.join(OUT, "bin")),
            ("ckptd convert --to safetensors", lambda src=src: [CKPTD, "convert", src, "--to", "safetensors",
                                                                "--consolidate", "always", "--out", fresh("st")],
             os.path.join(OUT, "st")),
            ("ckptd convert --to bin --no-verify", lambda src=src: [CKPTD, "convert", src, "--to", "bin",
                                                                    "--consolidate", "always", "--no-verify",
                                                                    "--out", fresh("bin")], os.path.join(OUT, "bin")),
            (f"python {py[0]}", py[1], py_out),
        ]))
    return result


def rank_bytes(src: str) -> int:
    total = 0
    for root, _, files in os.walk(src):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files
                     if f.endswith((".pt", ".distcp")) or f == ".metadata")
    return total


def main():
    table = []
    for case, src, commands in rows():
        reference = None
        for label, make_cmd, out in commands:
            samples = [timed(make_cmd()) for _ in range(RUNS)]
            med = {k: statistics.median(s[k] for s in samples) for k in ("wall", "cpu", "rss")}
            if label.startswith("python"):
                reference = out
            table.append((case, label, med, rank_bytes(src)))
            print(f"{case:6s} {label:40s} wall {med['wall']:6.2f} s  cpu {med['cpu']:6.2f} s  "
                  f"rss {med['rss']:8.1f} MiB", flush=True)
        # Bit for bit: ckptd's last .bin and safetensors outputs against the Python tool's file.
        for ours in ("bin", "st"):
            target = glob.glob(os.path.join(OUT, ours, "*"))[0]
            check = subprocess.run([CKPTD, "verify", reference, target], capture_output=True, text=True)
            if check.returncode != 0:
                raise SystemExit(f"bench: {case} {ours} differs from {reference}: {check.stderr}")
        print(f"{case:6s} ckptd outputs equal the Python tool's bit for bit", flush=True)
    shutil.rmtree(OUT, ignore_errors=True)
    write_markdown(table)


def write_markdown(table):
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    lines = ["## Distributed checkpoints (issue 12)", "",
             f"GPT-2 small shape (124.4M parameters, 0.5 GB fp32), world size 2, real Trainer + DeepSpeed 0.19.8 / "
             f"FSDP2 checkpoints; {RUNS} run(s) per row, medians, files warm; release build of {rev.strip()}. "
             "Every ckptd output equals the Python tool's bit for bit (`ckptd verify`). "
             "Made by `scripts/bench/dist_bench.py` (part of `make bench`).", "",
             "| checkpoint | rank files | route | wall s | cpu s | peak RSS MiB |", "|---|---|---|---|---|---|"]
    for case, label, med, size in table:
        lines.append(f"| {case} | {size / 1e9:.2f} GB | {label} | {med['wall']:.2f} | {med['cpu']:.2f} | "
                     f"{med['rss']:.1f} |")
    lines.append("")
    for case in ("zero2", "zero3", "fsdp2"):
        rows_ = [(label, med) for c, label, med, _ in table if c == case]
        ours = [med for label, med in rows_ if label == "ckptd convert --to bin"]
        theirs = [med for label, med in rows_ if label.startswith("python")]
        if ours and theirs:
            o, t = ours[0], theirs[0]
            ok = o["rss"] < 64 and o["wall"] < t["wall"]
            lines.append(f"- {case}: {'met' if ok else 'NOT met'}: ckptd (verified) {o['wall']:.2f} s / "
                         f"{o['rss']:.1f} MiB against {t['wall']:.2f} s / {t['rss']:.1f} MiB "
                         f"(goal: under 64 MiB and faster)")
    section = "\n".join(lines) + "\n"
    path = os.path.join(REPO, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    pattern = re.compile(r"## Distributed checkpoints \(issue 12\).*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section.rstrip("\n"), text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)
    print(section)


if __name__ == "__main__":
    main()
