"""Kill -9 at random moments during conversions (`ckptd convert` and the `ckptd run` daemon), both directions,
sizes from KiB to tens of MiB. After each kill: nothing under a final output name is partial (it verifies
against its source), the sources are byte-identical. Then a daemon start removes the stale temporaries and
completes every conversion; the manifest reads cleanly (a torn last line is tolerated).

The random seed is printed (set CKPTD_FAULT_SEED to replay a run).
"""

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from daemon_support import (
    Daemon,
    binary,
    clean_env,
    converted_names,
    fingerprint,
    read_manifest,
    run,
    temporaries,
    wait_for,
    write_bin_checkpoint,
    write_safetensors_checkpoint,
)

SIZES = [6 << 10, 200 << 10, 2 << 20, 10 << 20, 24 << 20]
CONVERT_RUNS = 50
DAEMON_RUNS = 6
TORN = b'{"checkpoint": "checkpoint-torn", "event": "conv'
# source file name -> (target format, root name)
DIRECTIONS = {"model.safetensors": "bin", "pytorch_model.bin": "safetensors"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One source checkpoint per (size, source file name), written by the real libraries."""
    base = tmp_path_factory.mktemp("sources")
    out = {}
    for index, size in enumerate(SIZES):
        st = base / f"st-{size}"
        write_safetensors_checkpoint(st, nbytes=size, seed=index)
        out[(size, "model.safetensors")] = st
        pt = base / f"pt-{size}"
        write_bin_checkpoint(pt, nbytes=size, seed=index + 100)
        out[(size, "pytorch_model.bin")] = pt
    return out


def place(source: Path, folder: Path):
    shutil.copytree(source, folder)
    # The folder must look finished and old enough for the daemon's settle time.
    old = time.time() - 30
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (old, old))


def check_after_kill(folder: Path, source_name: str, fmt: str, before: dict):
    """Sources unchanged; an output under its final name verifies bit for bit against the source."""
    assert fingerprint(folder, before) == before, f"{folder}: source changed by a killed conversion"
    output = folder / converted_names(fmt, source_name)
    if output.exists():
        code, out, err = run(["verify", folder / source_name, output])
        assert code == 0, f"{output} exists under its final name but does not verify: {out}{err}"
        return True
    return False


def calibrate(sources, tmp_path):
    """Seconds one `ckptd convert` takes per (size, source): the window the random kills aim at."""
    times = {}
    for (size, name), source in sources.items():
        folder = tmp_path / "calibrate" / f"{size}-{name}"
        place(source, folder)
        started = time.monotonic()
        code, out, err = run(["convert", folder, "--to", DIRECTIONS[name]])
        times[(size, name)] = time.monotonic() - started
        assert code == 0, err
    shutil.rmtree(tmp_path / "calibrate")
    return times


def convert_and_kill(folder: Path, fmt: str, seconds: float, aim: bool, rng) -> bool:
    """Starts `ckptd convert FOLDER --to FMT` and kills it -9 at a random moment; True if it was still running."""
    proc = subprocess.Popen(
        [str(binary()), "convert", str(folder), "--to", fmt],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
    )
    if aim:
        # Aim at the write: once the temporary exists, somewhere in the time left.
        deadline = time.monotonic() + seconds * 2
        while proc.poll() is None and not temporaries(folder) and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, seconds * 0.6))
    else:
        time.sleep(rng.uniform(0, seconds * 1.1))
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    code = proc.wait()
    assert killed or code == 0, f"ckptd convert {folder} --to {fmt} failed with {code} without being killed"
    return killed


def test_kill9_during_conversions(sources, tmp_path):
    seed = int(os.environ.get("CKPTD_FAULT_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    print(f"\nkill -9 seed {seed}")
    times = calibrate(sources, tmp_path)
    roots = {fmt: tmp_path / f"runs-to-{fmt}" for fmt in ("bin", "safetensors")}
    for root in roots.values():
        root.mkdir()
    checkpoints = []  # (root, folder, source name, target format, source fingerprint)
    kills = outputs_seen = torn = 0

    for run_index in range(CONVERT_RUNS):
        size = SIZES[run_index % len(SIZES)]
        name = list(DIRECTIONS)[(run_index // len(SIZES)) % 2]
        fmt = DIRECTIONS[name]
        folder = roots[fmt] / f"checkpoint-{run_index + 1}"
        place(sources[(size, name)], folder)
        before = fingerprint(folder, [name])
        checkpoints.append((roots[fmt], folder, name, fmt, before))
        # Up to four tries per run: a try that finished before the kill is checked, its output removed, and
        # the next one aims earlier.
        scale = 1.0
        for attempt in range(4):
            killed = convert_and_kill(folder, fmt, times[(size, name)] * scale, aim=run_index % 2 == 1, rng=rng)
            torn += bool(temporaries(folder))
            outputs_seen += check_after_kill(folder, name, fmt, before)
            if killed:
                kills += 1
                break
            (folder / converted_names(fmt, name)).unlink()
            scale /= 3

    stale = temporaries(tmp_path / "runs-to-bin") + temporaries(tmp_path / "runs-to-safetensors")
    assert len(stale) == torn
    # The daemon killed while converting: started on a new checkpoint, killed once its conversion is under way.
    daemon = Daemon(tmp_path / "etc")
    for fmt, root in roots.items():
        daemon.add_dropin(f"10-{fmt}.toml", root, fmt=fmt, settle=1)
    daemon_kills = 0
    for run_index in range(DAEMON_RUNS):
        size = SIZES[-1 - run_index % 2]
        name = list(DIRECTIONS)[run_index % 2]
        fmt = DIRECTIONS[name]
        folder = roots[fmt] / f"checkpoint-d{run_index + 1}"
        place(sources[(size, name)], folder)
        before = fingerprint(folder, [name])
        checkpoints.append((roots[fmt], folder, name, fmt, before))
        daemon.start()
        busy = lambda: any(a["checkpoint"] == folder.name for a in (daemon.status() or {}).get("active", []))
        try:
            wait_for(lambda: busy() or temporaries(folder), 60, 0.02, f"the daemon to start converting {folder}")
        except AssertionError:
            pass  # it may have finished between two polls: then the kill lands after it, also a valid case
        time.sleep(rng.uniform(0, times[(size, name)]))
        if daemon.alive() and (busy() or temporaries(folder)):
            daemon_kills += 1
        daemon.stop(signal.SIGKILL)
        for root_, folder_, name_, fmt_, before_ in checkpoints:
            outputs_seen += check_after_kill(folder_, name_, fmt_, before_)

    print(f"{CONVERT_RUNS} convert runs ({kills} killed mid-way, {torn} with a temporary), {DAEMON_RUNS} daemon runs ({daemon_kills} killed mid-conversion);"
          f" {len(stale)} stale temporaries left by the kills")

    # A torn last line, as a crash in the middle of an append leaves it.
    for root in roots.values():
        manifest = root / ".ckptd-manifest.jsonl"
        with open(manifest, "ab") as handle:
            handle.write(TORN)

    daemon.start()
    try:
        for root, folder, name, fmt, before in checkpoints:
            wait_for(
                lambda: any(
                    r["checkpoint"] == folder.name and r["event"] == "converted" for r in read_manifest(root, tolerate=(TORN,))
                )
                and not temporaries(folder),
                240,
                0.2,
                f"{folder} converted after the restart",
            )
        assert daemon.alive()
        assert not temporaries(tmp_path / "runs-to-bin") and not temporaries(tmp_path / "runs-to-safetensors")
        if stale:  # removed at the first start-up after the kills
            assert "removed stale temporaries" in daemon.log_text()
    finally:
        daemon.stop()

    for root, folder, name, fmt, before in checkpoints:
        assert fingerprint(folder, before) == before, f"{folder}: source changed"
        output = folder / converted_names(fmt, name)
        code, out, err = run(["verify", folder / name, output])
        assert code == 0, f"{output}: {out}{err}"
        # A killed `ckptd convert` may leave its claim (.ckptd-claim.*): the next claimant of the folder removes it
        # (the daemon takes claims once it is integrated with the cluster pieces).
        leftovers = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".ckptd-claim."))
        assert leftovers == sorted({name, output.name, "optimizer.pt", "trainer_state.json"}), leftovers
    # A sample through the real libraries too.
    for root, folder, name, fmt, before in checkpoints[:: len(SIZES) + 1]:
        output = folder / converted_names(fmt, name)
        if fmt == "bin":
            got = torch.load(output, map_location="cpu", weights_only=True)
            want = load_file(str(folder / name))
        else:
            got = load_file(str(output))
            want = torch.load(folder / name, map_location="cpu", weights_only=True)
        assert set(got) <= set(want), f"{output}: extra tensors {set(got) - set(want)}"
        for key in want:
            if key in got:
                assert torch.equal(got[key], want[key]), f"{output}: {key}"
            else:  # a tied weight is stored once in safetensors, as transformers does
                assert any(torch.equal(want[key], got[other]) for other in got), f"{output}: {key} lost"
    for root in roots.values():
        records = read_manifest(root, tolerate=(TORN,))  # strict: only torn lines are tolerated
        assert records, root
        assert all(r["event"] in ("converted", "failed", "vanished", "skipped", "removed_source") for r in records)
    print(f"kill runs survived: {CONVERT_RUNS + DAEMON_RUNS} ({kills + daemon_kills} kills); "
          f"{outputs_seen} post-kill output checks passed")
