"""Generates the distributed-checkpoint fixtures once and caches them outside the repo.

    python generate.py [CASE ...]     -> prints the cache folder

The cache folder is ~/.cache/ckptd/dist-fixtures/<hash>/ (or $CKPTD_DIST_FIXTURES/<hash>/), where <hash> covers
the producer scripts and Tests/interop/requirements.txt: a change to either makes fresh fixtures. Each case
folder gets a `.complete` marker once the producer and the reference tools (DeepSpeed's zero_to_fp32.py, torch's
dcp_to_torch_save) both succeeded; an interrupted case is redone from scratch. A lock file keeps two pytest runs
from generating at once.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE))
from make_dist import CASES  # noqa: E402


def fixture_hash() -> str:
    h = hashlib.sha256()
    for path in sorted(HERE.glob("*.py")) + [REPO / "Tests" / "interop" / "requirements.txt"]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    base = os.environ.get("CKPTD_DIST_FIXTURES") or str(Path.home() / ".cache" / "ckptd" / "dist-fixtures")
    return Path(base) / fixture_hash()


def python() -> str:
    return sys.executable


def run(argv, cwd, log):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PATH"] = str(Path(python()).parent) + os.pathsep + env.get("PATH", "")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(map(str, argv)) + "\n").encode())
        out.flush()
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    if proc.returncode != 0:
        tail = Path(log).read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}); log {log}:\n" + "\n".join(tail))


def torchrun(case, out, log):
    # --standalone: a local rendezvous on a free port, so parallel runs never collide.
    run([python(), "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(HERE / "make_dist.py"), case, str(out)], out, log)


def references(case, folder, log):
    """The reference tools' outputs: ref/pytorch_model.bin (zero_to_fp32.py) or ref/dcp.pt (dcp_to_torch_save)."""
    kind = CASES[case][0]
    ref = folder / "ref"
    ref.mkdir(exist_ok=True)
    if kind == "zero":
        ckpt = folder / "checkpoint-2"
        run([python(), str(ckpt / "zero_to_fp32.py"), str(ckpt), str(ref)], folder, log)
    else:
        dcp_dir = folder / "checkpoint-2" / "pytorch_model_fsdp_0" if kind == "trainer_fsdp" else folder / "dcp"
        run([python(), "-m", "torch.distributed.checkpoint.format_utils", "dcp_to_torch", str(dcp_dir),
             str(ref / "dcp.pt")], folder, log)


def generate(cases=None) -> Path:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for case in cases or list(CASES):
            folder = root / case
            if (folder / ".complete").exists():
                continue
            started = time.monotonic()
            # Two gloo ranks on a loaded 2-core machine now and then lose each other (seen once: rank 1 aborted
            # with SIGABRT during a ZeRO-1 run, and the same case passed when run again): a case gets three
            # tries, each from an empty folder; the failed tries' logs are kept beside the cache.
            for attempt in range(1, 4):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                log = folder / "generate.log"
                try:
                    torchrun(case, folder, log)
                    references(case, folder, log)
                    break
                except RuntimeError:
                    shutil.copy(log, root / f"{case}.attempt{attempt}.log")
                    if attempt == 3:
                        raise
            (folder / ".complete").write_text(f"{time.monotonic() - started:.1f}\n")
    return root


if __name__ == "__main__":
    print(generate(sys.argv[1:] or None))
