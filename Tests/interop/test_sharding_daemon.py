"""max_shard_size in a drop-in: the daemon writes sharded outputs; a size that does not parse is one line naming
the drop-in and the key, and the other directories keep working."""

import json

import torch

from daemon_support import Daemon, converted, run, wait_for, write_safetensors_checkpoint
from interop_helpers import load_bin


def test_daemon_shards_by_the_dropin_and_reports_a_bad_size(tmp_path):
    sharded, other = tmp_path / "sharded", tmp_path / "other"
    sharded.mkdir()
    other.mkdir()
    daemon = Daemon(tmp_path / "d")
    daemon.add_dropin("10-sharded.toml", sharded, extra='max_shard_size = "100KB"\n')
    daemon.add_dropin("20-broken.toml", tmp_path / "broken", extra='max_shard_size = "5XB"\n')
    daemon.add_dropin("30-other.toml", other)

    rc, out, err = run(["config", "check", "--config", str(daemon.config)])
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1 and len(lines) == 1, (rc, err)
    assert "20-broken.toml" in lines[0] and "max_shard_size: '5XB' is not a size" in lines[0], lines
    assert "max_shard_size = 100KB (100000 bytes)" in out, out

    daemon.start()
    try:
        tensors = write_safetensors_checkpoint(sharded / "checkpoint-1", nbytes=262144)
        write_safetensors_checkpoint(other / "checkpoint-1", nbytes=262144, seed=1)
        wait_for(lambda: converted(sharded, "checkpoint-1") and converted(other, "checkpoint-1"), 90, what="both")
    finally:
        daemon.stop()
    folder = sharded / "checkpoint-1"
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all(name.startswith("pytorch_model-0000") for name in shards), shards
    got = {}
    for name in shards:
        got.update(load_bin(folder / name))
    assert got.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert torch.equal(got[name], tensor), name
    assert (other / "checkpoint-1" / "pytorch_model.bin").exists()
    assert not (other / "checkpoint-1" / "pytorch_model.bin.index.json").exists()
