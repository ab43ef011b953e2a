"""Shared storage (issue 11), the `ckptd convert` side: commits on a FUSE mount (link+unlink where renameat2
RENAME_NOREPLACE gives EINVAL), claims per checkpoint folder across two mounts of one backing folder (never two
processes on one mount, which hides the race), clock skew (libfaketime), SIGKILL leftovers swept by the next run,
and `ckptd config check` naming the file system and watch mode.

bindfs mounts stand in for NFS (see fuse_mounts.py); torch and safetensors check every output.
"""

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from daemon_support import binary, clean_env, run, temporaries, write_bin_checkpoint, write_safetensors_checkpoint
from fuse_mounts import bindfs_mounts, fstype

CLAIM = re.compile(r"^\.ckptd-claim\.")  # claims and the private files of claims being made


def claims(folder: Path):
    return sorted(p.name for p in folder.iterdir() if CLAIM.match(p.name))


def main_config(tmp_path: Path, node: str, ttl: float) -> dict:
    """The env of a `ckptd convert` that reads node_name and claim_ttl_seconds from its own main file."""
    path = tmp_path / f"ckptd-{node}.toml"
    path.write_text(f'node_name = "{node}"\nclaim_ttl_seconds = {ttl}\ndropin_dirs = []\n')
    return {"CKPTD_CONFIG": str(path)}


def same_tensors(expected: dict, actual: dict):
    assert sorted(expected) == sorted(actual)
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name


def popen_convert(folder: Path, fmt: str, env: dict, *extra):
    return subprocess.Popen(
        [str(binary()), "convert", str(folder), "--to", fmt, *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(env),
    )


@pytest.fixture
def two_nodes(tmp_path):
    """One backing folder B and two bindfs mounts of it, like two nodes' NFS mounts."""
    backing = tmp_path / "B"
    with bindfs_mounts(backing, [tmp_path / "node1", tmp_path / "node2"]) as mounts:
        yield backing, mounts


def test_convert_commits_on_a_fuse_mount(two_nodes, tmp_path):
    backing, (m1, _) = two_nodes
    assert fstype(m1) == "fuse.ckptdtest"
    state = write_bin_checkpoint(backing / "run" / "checkpoint-1", nbytes=1 << 20, seed=1)
    tensors = write_safetensors_checkpoint(backing / "run" / "checkpoint-2", nbytes=1 << 20, seed=2)
    env = main_config(tmp_path, "n1", 120)

    code, out, err = run(["convert", m1 / "run" / "checkpoint-1", "--to", "safetensors"], env=env)
    assert code == 0, err
    loaded = load_file(str(backing / "run" / "checkpoint-1" / "model.safetensors"))
    same_tensors({k: v for k, v in state.items() if k != "tied.weight"}, {k: v for k, v in loaded.items()
                                                                         if k in state and k != "tied.weight"})

    code, out, err = run(["convert", m1 / "run" / "checkpoint-2", "--to", "bin"], env=env)
    assert code == 0, err
    loaded = torch.load(backing / "run" / "checkpoint-2" / "pytorch_model.bin", weights_only=True)
    same_tensors(tensors, loaded)
    # The no-replace commit still refuses to replace a file ckptd did not write.
    (backing / "run" / "checkpoint-2" / "pytorch_model.bin").unlink()
    (backing / "run" / "checkpoint-2" / "pytorch_model.bin").write_bytes(b"user file")
    code, out, err = run(["convert", m1 / "run" / "checkpoint-2", "--to", "bin"], env=env)
    assert code == 1 and "not overwritten" in err
    assert (backing / "run" / "checkpoint-2" / "pytorch_model.bin").read_bytes() == b"user file"
    for folder in (backing / "run").iterdir():
        assert temporaries(folder) == [] and claims(folder) == []


def test_a_live_claim_is_reported_and_waited_for(two_nodes, tmp_path):
    backing, (m1, m2) = two_nodes
    folder = backing / "run" / "checkpoint-1"
    tensors = write_safetensors_checkpoint(folder, nbytes=256 << 10, seed=3)
    # A live holder on "another node": a process that never refreshes (so it goes stale after the TTL).
    holder = subprocess.Popen(["sleep", "60"])
    try:
        record = ('{"boot_id":"another-boot","generation":1,"node":"gpu-9","pid":%d,"pid_start":"1",'
                  '"start":"2026-01-01T00:00:00Z","token":"x","beat":0}\n' % holder.pid)
        (folder / ".ckptd-claim.1").write_text(record)
        env = main_config(tmp_path, "n1", 0.6)
        code, out, err = run(["convert", m1 / "run" / "checkpoint-1", "--to", "bin"], env=env)
        assert code == 1
        assert f"{m1}/run/checkpoint-1: claimed by node gpu-9 pid {holder.pid}" in err
        assert not (folder / "pytorch_model.bin").exists()
        started = time.monotonic()
        code, out, err = run(["convert", m2 / "run" / "checkpoint-1", "--to", "bin", "--wait"], env=env)
        waited = time.monotonic() - started
        assert code == 0, err
        assert waited >= 0.6, "took over a claim before it was seen unchanged for claim_ttl_seconds"
        same_tensors(tensors, torch.load(folder / "pytorch_model.bin", weights_only=True))
        assert claims(folder) == []
    finally:
        holder.kill()
        holder.wait()


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def plant_claim(folder: Path, pid: int, node="gate", boot=None):
    """A claim file as another process would write it (generation 1)."""
    start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] if boot is None else "1"
    (folder / ".ckptd-claim.1").write_text(
        '{"beat":0,"boot_id":"%s","generation":1,"node":"%s","pid":%d,"pid_start":"%s",'
        '"start":"2026-01-01T00:00:00Z","token":"gate"}\n' % (boot or boot_id(), node, pid, start))


def test_two_mounts_convert_each_checkpoint_exactly_once(two_nodes, tmp_path):
    """20 rounds; in each, both converts (one per mount) wait on a claim held by a gate, then race for it when it
    goes: in even rounds the gate is a process of this boot that dies (its claim is taken at once), in odd rounds
    an unrefreshed claim of another node (taken once seen unchanged for claim_ttl_seconds). Exactly one converts;
    the other finds the work done."""
    backing, (m1, m2) = two_nodes
    # 1.5 s: the converts refresh every TTL/4, and a loaded disk can hold one heartbeat's fdatasync for a while.
    env1, env2 = main_config(tmp_path, "n1", 1.5), main_config(tmp_path, "n2", 1.5)
    winners = {"n1": 0, "n2": 0}
    for index in range(20):
        name = f"checkpoint-{index}"
        folder = backing / "run" / name
        tensors = write_safetensors_checkpoint(folder, nbytes=2 << 20, seed=index)
        gate = subprocess.Popen(["sleep", "60"])
        if index % 2 == 0:
            plant_claim(folder, gate.pid)
        else:
            plant_claim(folder, gate.pid, node="gone", boot="another-boot")
        first = popen_convert(m1 / "run" / name, "bin", env1, "--wait")
        second = popen_convert(m2 / "run" / name, "bin", env2, "--wait")
        time.sleep(0.2)
        assert first.poll() is None and second.poll() is None, "a convert did not wait for a live claim"
        gate.kill()
        gate.wait()
        results = {"n1": first.communicate(timeout=120), "n2": second.communicate(timeout=120)}
        codes = {"n1": first.returncode, "n2": second.returncode}
        wrote = [node for node, (out, _) in results.items() if ": wrote " in out]
        assert len(wrote) == 1, f"round {index}: {results} {codes}"
        winner = wrote[0]
        loser = "n2" if winner == "n1" else "n1"
        winners[winner] += 1
        assert codes == {"n1": 0, "n2": 0}, results
        out, err = results[loser]
        assert "converted while waiting for the claim of node " in out and "; nothing to do" in out, (out, err)
        same_tensors(tensors, torch.load(folder / "pytorch_model.bin", weights_only=True))
        assert claims(folder) == [] and temporaries(folder) == []
    print(f"\nwinners per mount: {winners}")


def test_a_clock_30s_apart_steals_no_live_claim(two_nodes, tmp_path):
    """Clock skew: the holder's claim file carries times 30 s in the past (as written by a node whose clock is
    30 s behind the observer's), re-dated every few milliseconds, with a claim_ttl_seconds of 3 (longer than the conversion). An observer that
    compared file times with its own clock would take the live claim at once; ckptd judges staleness only by
    seeing the file unchanged on its own monotonic clock, so the waiting convert never steals it.

    (test_cluster_daemon.py runs a whole ckptd instance 30 s ahead under libfaketime; that needs
    FAKETIME_SHARED preset, or libfaketime's setenv moves `environ` and Swift finds no arguments, and
    FAKETIME_DONT_FAKE_MONOTONIC=1, or Dispatch timers never fire. Here the file-time adversary is enough.)"""
    backing, (m1, m2) = two_nodes
    # A TTL longer than the conversion: an observer comparing file times with its clock steals the claim at
    # once, while ckptd never sees it unchanged that long. (With 0.4 s, a heartbeat starved by a loaded disk,
    # fdatasync behind a 20 GiB write, was once taken over legitimately, and the fence then stopped the holder.)
    env1, env2 = main_config(tmp_path, "n1", 3), main_config(tmp_path, "n2", 3)
    for index in range(3):
        name = f"checkpoint-{index}"
        folder = backing / "run" / name
        tensors = write_safetensors_checkpoint(folder, nbytes=24 << 20, seed=index)
        holder = popen_convert(m1 / "run" / name, "bin", env1)
        deadline = time.monotonic() + 30
        # Wait for the holder's claim itself (not its private file: the claim is linked into place just after).
        while not [c for c in claims(folder) if c[len(".ckptd-claim."):].isdigit()]:
            assert holder.poll() is None and time.monotonic() < deadline, "the holder never claimed"
            time.sleep(0.002)
        waiter = popen_convert(m2 / "run" / name, "bin", env2, "--wait")
        redated = 0
        while holder.poll() is None:
            past = time.time() - 30
            for claim in claims(folder):
                try:
                    os.utime(folder / claim, (past, past))
                    redated += 1
                except FileNotFoundError:
                    pass
            time.sleep(0.005)
        out1, err1 = holder.communicate(timeout=120)
        out2, err2 = waiter.communicate(timeout=120)
        assert redated > 10, "the holder finished before the skewed claim could be observed"
        assert holder.returncode == 0 and ": wrote " in out1, (out1, err1)
        assert waiter.returncode == 0 and "converted while waiting for the claim of node n1 pid" in out2, (out2, err2)
        same_tensors(tensors, torch.load(folder / "pytorch_model.bin", weights_only=True))
        assert claims(folder) == []


def test_sigkilled_converts_leave_nothing_after_one_clean_run(two_nodes, tmp_path):
    backing, (m1, _) = two_nodes
    folder = backing / "run" / "checkpoint-1"
    tensors = write_safetensors_checkpoint(folder, nbytes=6 << 20, seed=7)
    env = main_config(tmp_path, "n1", 120)
    rng = random.Random(int(os.environ.get("CKPTD_FAULT_SEED") or time.time_ns() % 1_000_000))
    started = time.monotonic()
    code, _, err = run(["convert", m1 / "run" / "checkpoint-1", "--to", "bin"], env=env)
    assert code == 0, err
    seconds = time.monotonic() - started
    (folder / "pytorch_model.bin").unlink()
    left = 0
    for _ in range(30):
        proc = popen_convert(m1 / "run" / "checkpoint-1", "bin", env, "--force")
        time.sleep(rng.uniform(0, seconds))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left = max(left, len(temporaries(folder)) + len(claims(folder)))
        output = folder / "pytorch_model.bin"
        if output.exists():
            same_tensors(tensors, torch.load(output, weights_only=True))
            output.unlink()
    print(f"\nmost leftovers after a kill: {left}")
    assert left > 0, "no kill left a temporary or claim behind: the test tested nothing"
    code, out, err = run(["convert", m1 / "run" / "checkpoint-1", "--to", "bin"], env=env)
    assert code == 0, err
    assert temporaries(folder) == [], "a killed run's temporary survived the clean run"
    assert claims(folder) == [], "a stale claim survived the clean run"
    same_tensors(tensors, torch.load(folder / "pytorch_model.bin", weights_only=True))


def test_config_check_names_the_file_system_and_watch_mode(two_nodes, tmp_path):
    backing, (m1, _) = two_nodes
    (backing / "run").mkdir(parents=True, exist_ok=True)
    local = tmp_path / "local-run"
    local.mkdir()
    dropins = tmp_path / "watch.d"
    dropins.mkdir()
    (dropins / "10-shared.toml").write_text(f'path = "{m1}/run"\nformat = "bin"\npoll_seconds = 0.2\n')
    (dropins / "20-local.toml").write_text(f'path = "{local}"\nformat = "bin"\n')
    (dropins / "30-forced.toml").write_text(f'path = "{m1}/other"\nformat = "bin"\nwatch = "inotify"\n')
    config = tmp_path / "ckptd.toml"
    config.write_text(f'dropin_dirs = ["{dropins}"]\nnode_name = "n1"\nclaim_ttl_seconds = 2\n')
    code, out, err = run(["config", "check", "--config", config])
    assert code == 0, err
    sections = out.split("\n\n")[1].split(f"{local}  (from")
    shared, rest = sections[0], sections[1]
    assert f"file system: fuse.ckptdtest (f_type 0x65735546, mounted at {m1})" in shared
    assert "watch mode: poll (inotify + every 0.2 s): fuse.ckptdtest is a FUSE mount" in shared
    local_part, forced = rest.split(f"{m1}/other  (from")
    assert "watch mode: inotify: " in local_part and "is a local file system" in local_part
    assert 'watch mode: inotify: watch = "inotify" (fuse.ckptdtest is not local)' in forced
    assert "node_name:    n1" in out and "claim_ttl_seconds: 2" in out
