"""Generates synthetic checkpoints with a transformer's tensor shapes, in both formats, sharded and not.

Usage: gen.py OUTDIR SIZE_GIB
Writes OUTDIR/{st,st-sharded,bin,bin-sharded}/ with model(.safetensors|pytorch_model.bin) or shards + index,
written by the real libraries (safetensors.torch.save_file, torch.save) the way transformers lays them out.
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file

HIDDEN = 1024
INTER = 4096
VOCAB = 32000
SHARD_BYTES = 1_000_000_000  # transformers' decimal sizes ("1GB")


def state_dict(size_gib: float) -> dict:
    target = int(size_gib * (1 << 30))
    gen = torch.Generator().manual_seed(0)
    sd = {"model.embed_tokens.weight": torch.randn(VOCAB, HIDDEN, generator=gen)}
    total = sd["model.embed_tokens.weight"].nbytes
    layer = 0
    while total < target:
        p = f"model.layers.{layer}."
        shapes = {
            "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
            "self_attn.k_proj.weight": (HIDDEN, HIDDEN),
            "self_attn.v_proj.weight": (HIDDEN, HIDDEN),
            "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
            "mlp.gate_proj.weight": (INTER, HIDDEN),
            "mlp.up_proj.weight": (INTER, HIDDEN),
            "mlp.down_proj.weight": (HIDDEN, INTER),
            "input_layernorm.weight": (HIDDEN,),
            "post_attention_layernorm.weight": (HIDDEN,),
        }
        for name, shape in shapes.items():
            t = torch.randn(*shape, generator=gen)
            sd[p + name] = t
            total += t.nbytes
            if total >= target:
                break
        layer += 1
    sd["model.norm.weight"] = torch.ones(HIDDEN)
    return sd


def shards(sd: dict) -> list:
    out, cur, cur_size = [], {}, 0
    for name, t in sd.items():
        if cur and cur_size + t.nbytes > SHARD_BYTES:
            out.append(cur)
            cur, cur_size = {}, 0
        cur[name] = t
        cur_size += t.nbytes
    if cur:
        out.append(cur)
    return out


def write_index(folder: str, index_name: str, names: list, parts: list):
    weight_map = {}
    for fname, part in zip(names, parts):
        for k in part:
            weight_map[k] = fname
    total = sum(t.nbytes for part in parts for t in part.values())
    with open(os.path.join(folder, index_name), "w") as f:
        f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True))
        f.write("\n")


def main():
    outdir, size = sys.argv[1], float(sys.argv[2])
    # A copy kept from an earlier generation (OUTDIR.keep, same size): hard-link it instead of generating again.
    keep = outdir.rstrip("/") + ".keep"
    if os.path.isdir(keep):
        for sub in sorted(os.listdir(keep)):
            os.makedirs(os.path.join(outdir, sub), exist_ok=True)
            for name in os.listdir(os.path.join(keep, sub)):
                os.link(os.path.join(keep, sub, name), os.path.join(outdir, sub, name))
        print(f"linked {outdir} from {keep}")
        return
    sd = state_dict(size)
    for sub in ("st", "st-sharded", "bin", "bin-sharded"):
        os.makedirs(os.path.join(outdir, sub), exist_ok=True)
    save_file(sd, os.path.join(outdir, "st", "model.safetensors"), metadata={"format": "pt"})
    torch.save(sd, os.path.join(outdir, "bin", "pytorch_model.bin"))
    parts = shards(sd)
    n = len(parts)
    st_names = [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    bin_names = [f"pytorch_model-{i + 1:05d}-of-{n:05d}.bin" for i in range(n)]
    for fname, part in zip(st_names, parts):
        save_file(part, os.path.join(outdir, "st-sharded", fname), metadata={"format": "pt"})
    for fname, part in zip(bin_names, parts):
        torch.save(part, os.path.join(outdir, "bin-sharded", fname))
    write_index(os.path.join(outdir, "st-sharded"), "model.safetensors.index.json", st_names, parts)
    write_index(os.path.join(outdir, "bin-sharded"), "pytorch_model.bin.index.json", bin_names, parts)
    print(f"generated {sum(t.nbytes for t in sd.values()) / (1 << 30):.2f} GiB, {len(sd)} tensors, {n} shards")


if __name__ == "__main__":
    main()
