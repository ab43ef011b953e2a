"""Consolidated distributed checkpoints honour --max-shard-size (issue 12 item 2 joined with issue 13 item 1): the
cached real DeepSpeed / FSDP / DCP checkpoints of test_distributed.py consolidated into shards named and indexed as
save_pretrained does; every shard loads, the index is right, values equal zero_to_fp32.py / dcp_to_torch_save bit
for bit, and transformers' from_pretrained gives the same logits where the checkpoint has a config."""

import json
import shutil

import pytest
import torch

from interop_helpers import assert_same_dict, load_bin, load_st_open
from test_distributed import CASES, TIED, expected, fixtures, reference, source_folder  # noqa: F401
from make_dist import gpt2_config

LIMIT = "60KB"  # the tiny GPT-2 has 0.2-0.5 MB of weights: several shards, and tensors larger than the limit


def consolidate_sharded(run_ckptd, folder, out, to):
    rc, stdout, err = run_ckptd(
        "convert", str(folder), "--to", to, "--out", str(out), "--consolidate", "always", "--max-shard-size", LIMIT)
    assert rc == 0, f"rc={rc}\nstdout={stdout}\nstderr={err}"
    stem, ext = ("model", ".safetensors") if to == "safetensors" else ("pytorch_model", ".bin")
    assert not (out / (stem + ext)).exists(), "a sharded output must not also write the single file"
    index = json.loads((out / f"{stem}{ext}.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1, shards
    assert shards == [f"{stem}-{i:05d}-of-{len(shards):05d}{ext}" for i in range(1, len(shards) + 1)], shards
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(stem)) == sorted(shards + [f"{stem}{ext}.index.json"])
    return index, shards


@pytest.mark.parametrize("to", ["bin", "safetensors"])
@pytest.mark.parametrize("case", ["zero2_fp32", "zero3_bf16", "trainer_fsdp2", "dcp_fsdp2_odd"])
def test_sharded_consolidation_equals_reference_tool(fixtures, run_ckptd, tmp_path, case, to):
    index, shards = consolidate_sharded(run_ckptd, source_folder(fixtures, case), tmp_path, to)
    limit = 60_000
    got, where, total = {}, {}, 0
    storages = {}
    for shard in shards:
        if to == "bin":
            tensors = load_bin(tmp_path / shard)
            meta = {}
        else:
            tensors, meta = load_st_open(tmp_path / shard)
            assert meta.get("format") == "pt"
        unique = {}
        for name, tensor in tensors.items():
            assert name not in got, f"{name} in two shards"
            got[name] = tensor
            where[name] = shard
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset()) if to == "bin" else name
            unique.setdefault(key, tensor.numel() * tensor.element_size())
            storages.setdefault(shard, []).append(name)
        size = sum(unique.values())
        total += size
        # save_pretrained's rule: a shard over the limit holds exactly one tensor (and its tied names).
        assert size <= limit or len(unique) == 1, (shard, size)
        for alias, target in meta.items():
            if alias != "format":
                where[alias] = shard
                assert target in tensors, f"alias {alias} -> {target} not in its shard {shard}"
    assert index["weight_map"] == where
    assert index["metadata"]["total_size"] == total
    want = expected(fixtures, case)
    if to == "safetensors" and CASES[case][0] == "zero":
        assert TIED[0] not in got
        want = {k: v for k, v in want.items() if k != TIED[0]}
    if to == "bin" and CASES[case][0] == "zero":
        # tied names stay tied (one storage) and so in one shard
        assert where[TIED[0]] == where[TIED[1]]
        assert got[TIED[0]].untyped_storage().data_ptr() == got[TIED[1]].untyped_storage().data_ptr()
    assert_same_dict(got, want, f"{case}: ")


@pytest.mark.parametrize("to", ["safetensors", "bin"])
@pytest.mark.parametrize("case", ["zero3_bf16", "trainer_fsdp2"])
def test_sharded_consolidation_from_pretrained_logits(fixtures, run_ckptd, tmp_path, case, to):
    from transformers import GPT2LMHeadModel

    consolidate_sharded(run_ckptd, source_folder(fixtures, case), tmp_path, to)
    config = fixtures / case / "checkpoint-2" / "config.json"
    if config.exists():
        shutil.copy(config, tmp_path / "config.json")
    else:  # Trainer FSDP sharded checkpoints hold no config.json
        gpt2_config().save_pretrained(tmp_path)
    loaded = GPT2LMHeadModel.from_pretrained(str(tmp_path), torch_dtype=torch.float32).eval()
    live = GPT2LMHeadModel(gpt2_config()).eval()
    missing, unexpected = live.load_state_dict(reference(fixtures, case), strict=False)
    assert not unexpected and set(missing) <= {TIED[0]}
    live.tie_weights()
    ids = torch.randint(0, 251, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, live(input_ids=ids).logits)


def test_sharded_consolidation_memory_is_flat(fixtures, ckptd_bin, tmp_path):  # noqa: F811
    """The 256 MiB ZeRO-3 model of test_distributed_memory.py, consolidated into 50 MB shards: peak RSS stays
    under the same 64 MiB, and every shard holds what the partitions were built from."""
    from safetensors import safe_open

    from test_distributed_memory import COLS, PARAMS, ROWS, RSS_LIMIT_MIB, enlarge, peak_rss_mib

    folder = tmp_path / "checkpoint-2"
    shutil.copytree(source_folder(fixtures, "zero3_fp32_frozen"), folder)
    full = torch.randn(PARAMS * ROWS * COLS, generator=torch.Generator().manual_seed(5))
    enlarge(folder, 3, full)
    out = tmp_path / "out"
    rss = peak_rss_mib(ckptd_bin, ["convert", folder, "--to", "safetensors", "--out", out, "--max-shard-size", "50MB"])
    assert rss < RSS_LIMIT_MIB, f"peak RSS {rss:.1f} MiB for a {full.numel() * 4 >> 20} MiB model in 50 MB shards"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    # 4 MiB tensors, 11 per 50 MB shard: 64 tensors -> 6 shards
    assert len(set(index["weight_map"].values())) == 6, index["weight_map"]
    assert index["metadata"]["total_size"] == full.numel() * 4
    for i in (0, 1, PARAMS // 2, PARAMS - 1):
        name = f"layer{i}.weight"
        with safe_open(str(out / index["weight_map"][name]), framework="pt") as f:
            want = full[i * ROWS * COLS:(i + 1) * ROWS * COLS].view(ROWS, COLS)
            assert torch.equal(f.get_tensor(name), want), i
