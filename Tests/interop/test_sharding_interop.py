"""Sharded output (issue 13 item 1) checked with transformers, huggingface_hub and torch themselves."""

import json
import shutil

import pytest
import torch
from huggingface_hub import split_torch_state_dict_into_shards

import models
from interop_helpers import convert, load_bin

LIMITS = ["3KB", "5KiB", "0.01MB"]


def bert_model():
    from transformers import BertModel

    torch.manual_seed(3)
    return BertModel(models.bert_config(), add_pooling_layer=True).eval()


@pytest.mark.parametrize("limit", LIMITS)
def test_bin_to_sharded_safetensors_is_byte_identical_to_save_pretrained(tmp_path, run_ckptd, limit):
    model = bert_model()
    reference = tmp_path / "reference"
    model.save_pretrained(reference, max_shard_size=limit if "i" not in limit else 5 * 1024)
    src = tmp_path / "checkpoint-1"
    src.mkdir()
    shutil.copy2(reference / "config.json", src / "config.json")
    torch.save(model.state_dict(), src / "pytorch_model.bin")
    convert(run_ckptd, src, "safetensors", "--max-shard-size", limit)
    want = sorted(p.name for p in reference.glob("model*"))
    got = sorted(p.name for p in src.glob("model*"))
    assert len(want) > 2 and got == want
    for name in want:
        assert (src / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_tensor_over_the_limit_gets_its_own_shard_in_hub_order(tmp_path, run_ckptd):
    sd = {"a": torch.ones(100), "big": torch.ones(2000), "b": torch.ones(300), "c": torch.ones(700)}
    src = tmp_path / "checkpoint-2"
    src.mkdir()
    torch.save(sd, src / "pytorch_model.bin")
    convert(run_ckptd, src, "safetensors", "--max-shard-size", "4KB")
    split = split_torch_state_dict_into_shards(sd, max_shard_size="4KB")
    index = json.loads((src / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == split.tensor_to_filename
    assert index["metadata"]["total_size"] == split.metadata["total_size"]


def test_sharded_outputs_load_in_transformers_with_the_same_logits(tmp_path, run_ckptd):
    from transformers import GPT2LMHeadModel

    model = models.gpt2(seed=4)
    want = models.logits(model)
    src = tmp_path / "checkpoint-3"
    src.mkdir()
    model.config.save_pretrained(src)
    torch.save(model.state_dict(), src / "pytorch_model.bin")
    st = tmp_path / "st"
    convert(run_ckptd, src, "safetensors", "--out", st, "--max-shard-size", "8KB")
    shutil.copy2(src / "config.json", st / "config.json")
    assert len(list(st.glob("model-*-of-*.safetensors"))) > 2
    assert torch.equal(models.logits(models.load_model(GPT2LMHeadModel, st)), want)

    # Back to .bin under a limit that puts a shard boundary between the tied names' positions.
    binary = tmp_path / "bin"
    convert(run_ckptd, st, "bin", "--out", binary, "--max-shard-size", "6KB")
    shutil.copy2(src / "config.json", binary / "config.json")
    index = json.loads((binary / "pytorch_model.bin.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0] == f"pytorch_model-00001-of-{len(shards):05d}.bin"
    wm = index["weight_map"]
    assert wm["lm_head.weight"] == wm["transformer.wte.weight"]
    shard = load_bin(binary / wm["lm_head.weight"])
    assert shard["lm_head.weight"].untyped_storage().data_ptr() == shard["transformer.wte.weight"].untyped_storage().data_ptr()
    assert torch.equal(models.logits(models.load_model(GPT2LMHeadModel, binary)), want)

    # ckptd verify: a sharded folder against the unsharded source.
    for folder in (st, binary):
        rc, out, err = run_ckptd("verify", src, folder)
        assert rc == 0, err
