"""Tiny transformers / PEFT models built from configs (no downloads) and HF-style checkpoint writers."""

import json
from pathlib import Path

import torch

VOCAB = 99


def bert_config():
    from transformers import BertConfig

    return BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=VOCAB,
        max_position_embeddings=64,
    )


def gpt2_config():
    from transformers import GPT2Config

    return GPT2Config(
        n_embd=32, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=64, bos_token_id=0, eos_token_id=0
    )


def bert(seed: int = 0):
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    return BertForMaskedLM(bert_config()).eval()


def gpt2(seed: int = 0):
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(gpt2_config()).eval()


def sample_ids(seed: int = 1):
    return torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits(model, ids=None):
    model.eval()
    return model(input_ids=sample_ids() if ids is None else ids).logits


def load_model(cls, folder):
    return cls.from_pretrained(str(folder)).eval()


def shard_state_dict(sd: dict, max_bytes: int):
    """Greedy split in state_dict order like huggingface_hub (decimal sizes); names that share storage land in
    the shard of the first of them. Returns [ [names...], ... ] and total_size (unique storage bytes)."""
    shards, current, current_size = [], [], 0
    storage_shard, total = {}, 0
    for name, tensor in sd.items():
        key = tensor.untyped_storage().data_ptr()
        if key in storage_shard:
            index = storage_shard[key]
            (shards[index] if index < len(shards) else current).append(name)
            continue
        size = tensor.untyped_storage().nbytes()
        total += size
        if current and current_size + size > max_bytes:
            shards.append(current)
            current, current_size = [], 0
        storage_shard[key] = len(shards)
        current.append(name)
        current_size += size
    if current:
        shards.append(current)
    return shards, total


def save_sharded_bin(sd: dict, folder: Path, max_bytes: int) -> dict:
    """Writes pytorch_model-0000i-of-0000n.bin + pytorch_model.bin.index.json as older transformers did."""
    shards, total = shard_state_dict(sd, max_bytes)
    weight_map = {}
    for i, names in enumerate(shards):
        fname = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        torch.save({n: sd[n] for n in names}, folder / fname)
        weight_map.update({n: fname for n in names})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index
