"""Shared storage (issue 11), the daemon side, with real parts: three `ckptd run` instances ("nodes" n1, n2, n3) on
one shared output directory, each through its own bindfs mount of one backing folder B (as each node has its own
NFS mount), with watch = "auto", poll_seconds = 0.2 and claim_ttl_seconds = 2. The trainer (a real transformers
Trainer, or torch / safetensors writers) writes straight into B, bypassing every mount, so inotify on the mounts
sees nothing, exactly as on NFS with the writer on another node; only polling finds the checkpoints.

Tests: exactly once (checkpoints landing one by one, some from a real Trainer run), a storm of 20 at once, SIGKILL
of the instance holding a claim mid-conversion (another finishes; the restarted one converts nothing again), one
instance's wall clock 30 s ahead (libfaketime), and watch = "auto" choosing polling on the mounts and inotify
alone on a local folder.

The contract under test: DESIGN.md "Shared file systems and several nodes"; the measurements behind it:
../shared/reference/shared-filesystems.md. Needs root, /dev/fuse and bindfs (skips otherwise, see fuse_mounts.py).
"""

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from daemon_support import MANIFEST, TEMP_MARK, Daemon, binary, read_manifest, run, temporaries, wait_for
from fuse_mounts import bindfs_mounts, fstype

NODES = ("n1", "n2", "n3")
TTL = 2.0  # claim_ttl_seconds
POLL = 0.2  # poll_seconds
SETTLE = 0.5  # settle_seconds
MARKER = "trainer_state.json"
CLAIM = ".ckptd-claim."
CLAIM_FILE = re.compile(r"^\.ckptd-claim\.(\d+)$")  # a claim itself (not the private file of one being made)
LOCK = MANIFEST + ".lock."
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SKEW = 30  # seconds the skewed instance's wall clock runs ahead


# --- the instances ---------------------------------------------------------------------------------------------


class Node(Daemon):
    """One `ckptd run` instance: its own main config (node_name, claim_ttl_seconds), one drop-in watching `root`
    (its own mount of the shared folder) with watch = "auto", and optional extra environment (libfaketime)."""

    def __init__(self, base: Path, name: str, root: Path, fmt: str, env=None, no_args=False):
        super().__init__(base)
        self.name = name
        self.root = root
        self.extra_env = dict(env or {})
        self.no_args = no_args  # `ckptd` without arguments, CKPTD_COMMAND=run (the libfaketime fallback)
        with open(self.config, "a") as handle:
            handle.write(f'node_name = "{name}"\nclaim_ttl_seconds = {TTL}\n')
        self.add_dropin("10-run.toml", root, fmt=fmt, settle=SETTLE,
                        extra=f'watch = "auto"\npoll_seconds = {POLL}\n')

    def spawn(self, env, prefix=()):
        env = {**env, **self.extra_env}
        if not self.no_args:
            return super().spawn(env, prefix)
        env.update({"CKPTD_CONFIG": str(self.config), "CKPTD_COMMAND": "run"})
        self._logfile = open(self.log, "ab")
        self.proc = subprocess.Popen([*prefix, str(binary())], stdin=subprocess.DEVNULL, stdout=self._logfile,
                                     stderr=subprocess.STDOUT, env=env)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        pid = self.pid
        code = super().stop(sig, timeout)
        if pid and "LD_PRELOAD" in self.extra_env:
            # libfaketime's semaphore and shared memory (named after the pid) outlive a SIGKILL.
            for name in (f"faketime_shm_{pid}", f"sem.faketime_sem_{pid}"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"/dev/shm/{name}")
        return code

    def entry(self):
        return self.directory(self.root)

    def last_poll(self):
        """The status file's `last_poll.at` for the watched directory (None before the first poll)."""
        entry = self.entry() or {}
        return (entry.get("last_poll") or {}).get("at")

    def pending_reasons(self):
        entry = self.entry() or {}
        return {item["name"]: item["reason"] for item in entry.get("pending", [])}


class Cluster:
    """The backing folder B (output directory B/run), one bindfs mount of B per node, and the nodes on them."""

    def __init__(self, tmp_path: Path, backing: Path, mounts):
        self.tmp_path = tmp_path
        self.backing = backing
        self.run = backing / "run"
        self.mounts = dict(zip(NODES, mounts))
        self.nodes = {}

    def node(self, name: str, fmt="bin", env=None, no_args=False) -> Node:
        node = Node(self.tmp_path / f"etc-{name}", name, self.mounts[name] / "run", fmt, env, no_args)
        self.nodes[name] = node
        return node

    def start(self, fmt="bin", names=NODES):
        return [self.node(name, fmt).start() for name in names]

    def running(self):
        return [node for node in self.nodes.values() if node.proc is not None and node.proc.returncode is None]

    def stop_all(self):
        for node in self.nodes.values():
            if node.proc is not None:
                node.stop(signal.SIGKILL)
            log = node.log_text().splitlines()
            print(f"\n--- {node.name} log (last 30 lines of {len(log)}) ---\n" + "\n".join(log[-30:]))


@pytest.fixture
def cluster(tmp_path):
    """B with an empty output directory B/run and three mounts of B; every daemon is killed before the unmount."""
    backing = tmp_path / "B"
    (backing / "run").mkdir(parents=True)
    with bindfs_mounts(backing, [tmp_path / f"mount-{name}" for name in NODES]) as mounts:
        group = Cluster(tmp_path, backing, mounts)
        try:
            yield group
        finally:
            group.stop_all()


# --- checkpoints written by the real libraries, straight into B -------------------------------------------------


def pattern_tensors(megabytes: float, seed: int, count=4) -> dict:
    """`count` float32 tensors of about `megabytes` in all, every element distinct within a tensor (an output
    with a block at the wrong offset cannot compare equal), plus a small bias."""
    rows = max(1, int(megabytes * (1 << 20)) // 4 // count // 1024)
    tensors = {}
    for index in range(count):
        values = torch.arange(rows * 1024, dtype=torch.int32) % (1 << 24)
        tensors[f"layers.{index}.weight"] = values.float().view(rows, 1024) + (seed * count + index) * 0.25
    tensors["head.bias"] = torch.randn(7, generator=torch.Generator().manual_seed(seed))
    return tensors


def finish_checkpoint(folder: Path, step: int):
    """The trainer's last files, the ready marker last."""
    torch.save({"state": {}, "param_groups": []}, folder / "optimizer.pt")
    (folder / "config.json").write_text(json.dumps({"model_type": "toy", "step": step}))
    (folder / MARKER).write_text(json.dumps({"global_step": step}))


def land_safetensors(folder: Path, megabytes: float, seed: int) -> dict:
    folder.mkdir(parents=True)
    tensors = pattern_tensors(megabytes, seed)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    finish_checkpoint(folder, seed)
    return tensors


def land_bin(folder: Path, megabytes: float, seed: int) -> dict:
    folder.mkdir(parents=True)
    tensors = pattern_tensors(megabytes, seed)
    torch.save(tensors, folder / "pytorch_model.bin")
    finish_checkpoint(folder, seed)
    return tensors


def same_tensors(expected: dict, actual: dict, what=""):
    assert sorted(expected) == sorted(actual), f"{what}: names differ"
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype and torch.equal(actual[name], tensor), f"{what}: {name} differs"


def output_of(folder: Path, fmt: str) -> dict:
    if fmt == "bin":
        return torch.load(folder / "pytorch_model.bin", weights_only=True)
    return load_file(str(folder / "model.safetensors"))


def real_trainer_run(output_dir: Path, steps=4, save_steps=2):
    """A tiny GPT-2 trained by transformers' Trainer, checkpoints written into `output_dir` by the Trainer itself
    (model.safetensors, optimizer, scheduler, rng state, trainer_state.json)."""
    from transformers import Trainer, TrainingArguments

    import models

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, index):
            ids = torch.randint(0, models.VOCAB, (12,), generator=torch.Generator().manual_seed(index))
            return {"input_ids": ids, "labels": ids}

    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=steps, save_steps=save_steps, per_device_train_batch_size=4,
        logging_steps=100, report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=3,
    )
    Trainer(model=models.gpt2(seed=5).train(), args=args, train_dataset=Data()).train()
    return sorted((p for p in output_dir.iterdir() if p.name.startswith("checkpoint-")),
                  key=lambda p: int(p.name.split("-")[1]))


# --- what is on the shared folder --------------------------------------------------------------------------------


def claims(folder: Path):
    """(generation, record or None) of the claims in a checkpoint folder, lowest generation first."""
    found = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return found
    for name in names:
        match = CLAIM_FILE.match(name)
        if not match:
            continue
        try:
            record = json.loads((folder / name).read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            record = None
        found.append((int(match.group(1)), record))
    return sorted(found, key=lambda item: item[0])


def first_claim(folder: Path):
    """(generation, record) of the lowest-generation claim once it is readable, else None."""
    found = claims(folder)
    return found[0] if found and found[0][1] else None


class ClaimWatch:
    """Follows the claims on checkpoint folders from the test's side (reading B, not a mount): when the content of
    each claim last changed (its beat), the longest a claim went unrefreshed, and every takeover with how long the
    superseded claim had gone unrefreshed when the new generation appeared."""

    def __init__(self):
        self.seen = {}  # (checkpoint, generation) -> (beat, node, monotonic time the beat was first seen)
        self.longest = {}  # (checkpoint, generation) -> longest time seen between two beats
        self.takeovers = []  # (checkpoint, generation, node, previous holder, its beat unchanged for seconds)

    def sample(self, folder: Path):
        now = time.monotonic()
        for generation, record in claims(folder):
            if record is None:
                continue
            key = (folder.name, generation)
            previous = self.seen.get(key)
            if previous is None:
                older = [(g, v) for (name, g), v in self.seen.items() if name == folder.name and g < generation]
                if older:
                    _, (_, node, since) = max(older)
                    self.takeovers.append((folder.name, generation, record["node"], node, now - since))
            elif previous[0] == record.get("beat"):
                self.longest[key] = max(self.longest.get(key, 0.0), now - previous[2])
                continue
            self.seen[key] = (record.get("beat"), record["node"], now)

    def premature(self, slack=0.5):
        """Takeovers of a claim refreshed less than claim_ttl_seconds before (less `slack` for this sampling)."""
        return [t for t in self.takeovers if t[4] < TTL - slack]

    def report(self) -> str:
        gaps = ", ".join(f"{name} gen {g}: {gap:.2f} s" for (name, g), gap in sorted(self.longest.items()))
        return f"longest unrefreshed: {gaps or '-'}; takeovers: {self.takeovers or '-'}"


def written(folder: Path) -> int:
    """Bytes in the temporaries of a checkpoint folder."""
    total = 0
    for path in temporaries(folder):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total


def leftovers(root: Path):
    """Claims (and claims being made), manifest locks and temporaries anywhere under `root`."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.startswith((CLAIM, LOCK, TEMP_MARK)))


def manifest_whole(root: Path):
    """Every manifest line whole: JSON with checkpoint, event, node, start and end, and a newline at the end."""
    data = (root / MANIFEST).read_bytes()
    assert data.endswith(b"\n"), f"torn last manifest line: {data[-200:]!r}"
    records = []
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        record = json.loads(line)  # raises on a torn or interleaved line
        missing = {"checkpoint", "event", "node", "start", "end"} - set(record)
        assert not missing, f"manifest line {number} lacks {missing}: {line[:200]!r}"
        records.append(record)
    return records


def converters(records, name: str):
    """The nodes that wrote a `converted` record for checkpoint `name`."""
    return [r["node"] for r in records if r["checkpoint"] == name and r["event"] == "converted"]


def all_converted(root: Path, names):
    """Every named checkpoint has a `converted` record (the manifest read as a tolerant reader would)."""
    records = read_manifest(root, strict=False)
    done = {r.get("checkpoint") for r in records if r.get("event") == "converted"}
    return set(names) <= done


def failures(records):
    return [r for r in records if r["event"] == "failed"]


def iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait_polled(nodes, polls=3, timeout=30):
    """Waits until every node's status file has shown `polls` further polls of its mount: an event that proves the
    instance looked at the directory again, after which a duplicate conversion would have begun."""
    seen = {node.name: {node.last_poll()} for node in nodes}

    def polled():
        for node in nodes:
            assert node.alive(), f"{node.name} exited:\n{node.log_text()[-3000:]}"
            seen[node.name].add(node.last_poll())
        return all(len(seen[node.name] - {None}) > polls for node in nodes)

    wait_for(polled, timeout, 0.05, what=f"{polls} more polls by {[n.name for n in nodes]} (status last_poll.at)")


def settle_and_check(cluster: Cluster, names, fmt: str, sources: dict):
    """After all `names` are converted: no claim, lock or temporary left, every instance polled again, every
    manifest line whole, exactly one `converted` record per checkpoint, outputs equal their sources."""
    wait_for(lambda: not leftovers(cluster.backing), 30, what="claims, locks and temporaries to go")
    wait_polled(cluster.running())
    assert leftovers(cluster.backing) == []
    records = manifest_whole(cluster.run)
    assert failures(records) == []
    for name in names:
        assert len(converters(records, name)) == 1, f"{name}: {converters(records, name)} converted it"
    for name, tensors in sources.items():
        same_tensors(tensors, output_of(cluster.run / name, fmt), name)
    per_node = {node: sum(1 for r in records if r["event"] == "converted" and r["node"] == node) for node in NODES}
    print(f"\nconverted per node: {per_node}")
    return records, per_node


# --- 1. exactly once -------------------------------------------------------------------------------------------


def test_each_checkpoint_is_converted_exactly_once(cluster):
    """Checkpoints land in B one by one: two from a real Trainer run writing into B, then four written with
    safetensors. All three instances poll; each checkpoint gets exactly one `converted` record in all."""
    cluster.start(fmt="bin")
    trainer = real_trainer_run(cluster.run)
    assert [p.name for p in trainer] == ["checkpoint-2", "checkpoint-4"]
    sources = {p.name: load_file(str(p / "model.safetensors")) for p in trainer}
    latencies = []
    for index in range(4):
        name = f"checkpoint-{100 + index}"
        sources[name] = land_safetensors(cluster.run / name, 1, seed=index)
        landed = time.time()
        wait_for(lambda: all_converted(cluster.run, [name]), 60, 0.05, what=f"{name} converted")
        record = [r for r in read_manifest(cluster.run, strict=False)
                  if r.get("checkpoint") == name and r.get("event") == "converted"][0]
        latencies.append(iso(record["start"]) - landed)
    wait_for(lambda: all_converted(cluster.run, sources), 60, what="the Trainer's checkpoints converted")
    records, _ = settle_and_check(cluster, sorted(sources), "bin", sources)
    print(f"marker written -> conversion start: min {min(latencies):.2f} s, median "
          f"{statistics.median(latencies):.2f} s, max {max(latencies):.2f} s (poll_seconds {POLL}, settle {SETTLE})")

    # The Trainer's model loads from the converted .bin alone and computes what the Trainer's own file gives.
    from transformers import GPT2LMHeadModel

    import models

    last = trainer[-1]
    bin_only = cluster.tmp_path / "bin-only"
    bin_only.mkdir()
    for file in ("config.json", "pytorch_model.bin"):
        (bin_only / file).write_bytes((last / file).read_bytes())
    expected = models.logits(GPT2LMHeadModel.from_pretrained(str(last)))
    assert torch.equal(models.logits(GPT2LMHeadModel.from_pretrained(str(bin_only))), expected)


# --- 2. storm --------------------------------------------------------------------------------------------------


def test_a_storm_of_twenty_checkpoints(cluster):
    """20 finished checkpoints (torch.save .bin) renamed into the output directory at once; each is converted to
    safetensors exactly once across the three instances."""
    cluster.start(fmt="safetensors")
    staging = cluster.backing / ".staging"
    names = [f"checkpoint-{10 * (index + 1)}" for index in range(20)]
    sources = {name: land_bin(staging / name, 0.5, seed=index) for index, name in enumerate(names)}
    started = time.monotonic()
    for name in names:
        os.rename(staging / name, cluster.run / name)
    wait_for(lambda: all_converted(cluster.run, names), 120, 0.1, what="all 20 converted")
    elapsed = time.monotonic() - started
    _, per_node = settle_and_check(cluster, names, "safetensors", sources)
    print(f"storm of 20: all converted {elapsed:.1f} s after landing; spread {per_node}")


# --- 3. SIGKILL of the holder -----------------------------------------------------------------------------------


def test_sigkill_of_the_claim_holder(cluster):
    """A 384 MiB checkpoint (a few seconds to convert through the mount): once a claim appears, its holder gets
    SIGKILL. Another instance takes the claim over and finishes; no output ever appears incomplete under its final
    name; exactly one `converted` record; nothing left behind; the killed instance, restarted, converts nothing.

    The killed process stays a zombie (not reaped) until the takeover: its pid and start time still exist, so no
    instance can prove it dead (ckptd's same-boot shortcut needs the pid free or reused) and the takeover must
    come from the claim going unrefreshed for claim_ttl_seconds, as when a whole node dies. A takeover sooner
    than that fails the test (ClaimWatch.premature)."""
    cluster.start(fmt="bin")
    name = "checkpoint-500"
    folder = cluster.run / name
    source = land_safetensors(folder, 384, seed=9)
    output = folder / "pytorch_model.bin"

    watch = ClaimWatch()

    def sampled(check):
        watch.sample(folder)
        return check()

    generation, record = wait_for(lambda: sampled(lambda: first_claim(folder)), 60, 0.01,
                                  what="a claim on the big checkpoint")
    holder = cluster.nodes[record["node"]]
    assert record["pid"] == holder.pid and generation == 1, record
    # Mid-conversion: the holder has written 32 MiB of its temporary output.
    wait_for(lambda: sampled(lambda: output.exists() or written(folder) >= 32 << 20), 60, 0.01,
             what="the holder's temporary")
    holder.kill(signal.SIGKILL)
    killed = time.monotonic()
    assert not output.exists(), "the conversion finished before the kill: make the checkpoint bigger"
    temporaries_at_kill = [(p.name, p.stat().st_size) for p in temporaries(folder)]
    assert temporaries_at_kill, "the holder's temporary vanished before the kill"

    takeover, complete, checked_output = None, None, False
    deadline = killed + TTL + POLL + 90  # the takeover within TTL + poll, then a whole conversion on a loaded host
    while time.monotonic() < deadline:
        watch.sample(folder)
        if takeover is None and watch.takeovers:
            takeover = time.monotonic() - killed
        if output.exists() and not checked_output:
            # Under its final name an output is complete: it loads and equals the source at first sight.
            same_tensors(source, torch.load(output, weights_only=True), "output seen under its final name")
            checked_output = True
        if all_converted(cluster.run, [name]):
            complete = time.monotonic() - killed
            break
        time.sleep(0.02)
    assert complete is not None, f"{name} not converted {deadline - killed:.0f} s after the holder's SIGKILL"
    assert takeover is not None, "converted without a claim of a higher generation"
    _, new_generation, new_node, old_node, unrefreshed = watch.takeovers[0]
    assert old_node == holder.name and new_node != holder.name, watch.report()
    assert watch.premature() == [], f"a claim refreshed within claim_ttl_seconds was taken: {watch.report()}"
    assert takeover <= TTL + POLL + 10, f"the takeover came {takeover:.1f} s after the kill ({watch.report()})"
    holder.stop(signal.SIGKILL)  # reaps the zombie
    records, _ = settle_and_check(cluster, [name], "bin", {name: source})
    assert len(converters(records, name)) == 1 and converters(records, name)[0] != holder.name
    print(f"\nholder {holder.name} killed with temporaries {temporaries_at_kill}; {new_node} took over (generation "
          f"{new_generation}) {takeover:.2f} s after the kill, the claim unrefreshed for {unrefreshed:.2f} s; "
          f"finished {complete:.2f} s after the kill\n{watch.report()}")

    # The killed instance, restarted with the same node name and config, converts nothing again.
    before = output.stat()
    count = len(records)
    holder.start()
    wait_polled([holder], polls=5)
    records = manifest_whole(cluster.run)
    assert [r for r in records[count:] if r["event"] == "converted"] == [], records[count:]
    after = output.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "the output was rewritten"
    assert leftovers(cluster.backing) == []


# --- 4. clock skew ----------------------------------------------------------------------------------------------


def skewed_environment(tmp_path: Path):
    """The environment that runs ckptd with its wall clock SKEW seconds ahead (libfaketime preloaded), and whether
    ckptd must then be started without arguments (CKPTD_COMMAND=run).

    - FAKETIME_SHARED is preset: otherwise libfaketime's constructor adds it with setenv(), glibc moves `environ`
      off the initial stack, and Swift's runtime, which finds argv by walking back from `environ` on that stack,
      sees no arguments at all (CommandLine.arguments == []). With the variable present, setenv() rewrites it in
      place (libfaketime makes its own semaphore and shared memory when the named ones do not exist).
    - FAKETIME_DONT_FAKE_MONOTONIC=1: with CLOCK_MONOTONIC faked, Dispatch's timers (timerfd, TFD_TIMER_ABSTIME)
      do not fire and Task.sleep never returns.
    - NO_FAKE_STAT=1: the skewed instance sees real file times, which its own clock puts SKEW seconds in the
      past. An instance that judged claims by their mtime would take every live claim at first sight."""
    if not FAKETIME_LIB.exists():
        pytest.skip(f"needs libfaketime ({FAKETIME_LIB}; apt-get install faketime)")
    env = {
        "LD_PRELOAD": str(FAKETIME_LIB),
        "FAKETIME": f"+{SKEW}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_SHARED": f"/ckptd_test_sem_{os.getpid()} /ckptd_test_shm_{os.getpid()}",
        "NO_FAKE_STAT": "1",
    }
    probe = tmp_path / "probe.toml"
    probe.write_text('node_name = "probe"\ndropin_dirs = []\n')
    code, out, err = run(["config", "check", "--config", probe], env=env)
    return env, not (code == 0 and "node_name:    probe" in out)


def test_one_clock_thirty_seconds_ahead(cluster):
    """n3's wall clock runs 30 s ahead. A long conversion held by n1 is watched by n3 (and n2) for longer than
    claim_ttl_seconds and not taken; one held by n3 is not taken by n1 or n2; a handful of small checkpoints then
    land with all three running: nothing is converted twice, and only generation-1 claims ever exist."""
    env, no_args = skewed_environment(cluster.tmp_path)
    print(f"\nckptd under libfaketime gets its arguments: {not no_args}")
    n1, n2 = cluster.node("n1").start(), cluster.node("n2").start()
    n3 = cluster.node("n3", env=env, no_args=no_args)
    try:
        n3.start()
    except AssertionError:
        if no_args:
            pytest.skip("under libfaketime ckptd gets no arguments, and `ckptd` without arguments does not run the "
                        "daemon (CKPTD_COMMAND=run unsupported)")
        raise
    sources = {}
    watch = ClaimWatch()

    def held_by(holder: Node, watchers, name: str, seed: int):
        """Lands a big checkpoint while only `holder` runs (the watchers are stopped with SIGSTOP), waits for the
        holder's claim, resumes the watchers and follows the conversion to its end. Nothing is stopped while it
        holds a claim or the manifest lock."""
        wait_for(lambda: not leftovers(cluster.backing), 30, what="claims, locks and temporaries to go")
        folder = cluster.run / name
        for watcher in watchers:
            watcher.proc.send_signal(signal.SIGSTOP)
        try:
            sources[name] = land_safetensors(folder, 384, seed=seed)
            _, record = wait_for(lambda: first_claim(folder), 60, 0.01, what=f"{holder.name}'s claim on {name}")
            assert record["node"] == holder.name
        finally:
            for watcher in watchers:
                watcher.proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        reported = set()
        while not all_converted(cluster.run, [name]):
            assert time.monotonic() - resumed < 120, f"{name} not converted ({watch.report()})"
            watch.sample(folder)
            for watcher in watchers:
                if f"claimed by node {holder.name} pid {holder.pid}" in watcher.pending_reasons().get(name, ""):
                    reported.add(watcher.name)
            time.sleep(0.02)
        watched = time.monotonic() - resumed
        assert watch.premature() == [], f"a live claim was taken: {watch.report()}"
        record = [r for r in read_manifest(cluster.run, strict=False)
                  if r.get("checkpoint") == name and r.get("event") == "converted"][0]
        taken = [t for t in watch.takeovers if t[0] == name]
        if taken:  # legitimate: the holder's claim went unrefreshed for claim_ttl_seconds (a starved host)
            print(f"\n{name}: the claim went unrefreshed and was taken over: {taken}")
        else:
            assert record["node"] == holder.name, f"{record['node']} converted {name} held by {holder.name}"
        # The test tested something: the watchers saw the live claim, for longer than the TTL.
        assert reported, f"no watcher's status reported {name} as claimed by {holder.name} pid {holder.pid}"
        assert watched > TTL, f"the conversion lasted only {watched:.1f} s after the watchers resumed"
        print(f"\n{name}: held by {holder.name}, watched by {sorted(reported)} for {watched:.1f} s")

    # The skew is real: n3 dates its status SKEW seconds ahead of this process's clock (it rewrites it as it polls).
    wait_for(lambda: iso(n3.status()["updated_at"]) - time.time() > SKEW - 5, 10, 0.05,
             what=f"n3's status dated {SKEW} s ahead")
    held_by(n1, [n2, n3], "checkpoint-1000", seed=1)
    held_by(n3, [n1, n2], "checkpoint-2000", seed=2)

    names = [f"checkpoint-{3000 + index}" for index in range(6)]
    for index, name in enumerate(names):
        sources[name] = land_safetensors(cluster.run / name, 2, seed=10 + index)
    deadline = time.monotonic() + 90
    while not all_converted(cluster.run, names):
        assert time.monotonic() < deadline, "the small checkpoints were not converted"
        for name in names:
            watch.sample(cluster.run / name)
        time.sleep(0.02)
    settle_and_check(cluster, sorted(sources), "bin", sources)
    assert watch.premature() == [], f"a live claim was taken: {watch.report()}"
    print(watch.report())


# --- 5. watch = "auto" ------------------------------------------------------------------------------------------


def test_auto_polls_the_mounts_and_uses_inotify_alone_locally(cluster):
    """watch = "auto": polling on a FUSE mount (inotify there sees none of the writes made into B: checked with
    inotifywait), inotify alone on a local folder; the status file and `ckptd status` say so, and both folders'
    checkpoints are converted."""
    local = cluster.tmp_path / "local-run"
    local.mkdir()
    node = cluster.node("n1")
    node.add_dropin("20-local.toml", local, fmt="bin", settle=SETTLE, extra='watch = "auto"\n')
    mount = cluster.mounts["n1"]

    # Sanity gate: inotify on the mount hears nothing of a checkpoint written into B, then hears a canary
    # written through the mount.
    events_file = cluster.tmp_path / "inotify.txt"
    with open(events_file, "w") as sink:
        watcher = subprocess.Popen(["inotifywait", "-m", "-r", "--format", "%e %w%f", str(mount / "run")],
                                   stdout=sink, stderr=subprocess.PIPE, text=True)
    try:
        for line in watcher.stderr:  # "Setting up watches.", then "Watches established." (or an error and EOF)
            if "Watches established" in line:
                break
        assert watcher.poll() is None, "inotifywait could not watch the mount"
        remote = land_safetensors(cluster.run / "checkpoint-1", 1, seed=1)
        (mount / "run" / "canary").write_text("through the mount")
        wait_for(lambda: "canary" in events_file.read_text(), 10, 0.05, what="inotify to see the canary")
    finally:
        watcher.kill()
        watcher.wait()
    heard = [line for line in events_file.read_text().splitlines() if "checkpoint-1" in line]
    assert heard == [], f"inotify on the mount saw writes made into B: {heard}"
    (cluster.run / "canary").unlink()

    node.start()
    local_source = land_safetensors(local / "checkpoint-1", 1, seed=2)
    wait_for(lambda: all_converted(cluster.run, ["checkpoint-1"]) and all_converted(local, ["checkpoint-1"]), 60,
             what="both checkpoints converted")
    same_tensors(remote, output_of(cluster.run / "checkpoint-1", "bin"))
    same_tensors(local_source, output_of(local / "checkpoint-1", "bin"))

    wait_polled([node], polls=2)
    shared, own = node.directory(mount / "run"), node.directory(local)
    assert shared["file_system"]["type"] == "fuse.ckptdtest" == fstype(mount), shared
    assert shared["file_system"]["mode"] == "poll" and shared["file_system"]["reason"], shared
    assert iso(shared["last_poll"]["at"]) > time.time() - 30 and shared["last_poll"]["seconds"] >= 0, shared
    assert own["file_system"]["type"] == fstype(local), own
    assert own["file_system"]["mode"] == "inotify" and own["file_system"]["reason"], own
    assert not own.get("last_poll"), f"a local folder was polled: {own}"

    code, out, err = run(["status", "--status-file", node.status_file])
    assert code == 0, err
    lines = out.splitlines()
    shared_lines = [line for line in lines if str(mount / "run") in line and "fuse.ckptdtest" in line]
    local_lines = [line for line in lines if str(local) in line and fstype(local) in line]
    assert shared_lines and f"poll every {POLL} s" in shared_lines[0], out
    assert local_lines and "inotify" in local_lines[0] and "poll every" not in local_lines[0], out
