"""Writes the seeds of the distributed fuzz harnesses (Tests/fuzz/seeds/zero, Tests/fuzz/seeds/dcp) from the real
fixtures that Tests/interop/producers/generate.py makes (DeepSpeed ZeRO via Trainer, FSDP DCP via torchrun).

ZeRO files are re-saved with every tensor cut to a few elements (same pickle globals and structure as DeepSpeed
writes, a few KiB instead of MiB; ZeRO-3's ds_id attribute kept so _rebuild_from_type_v2 stays in). DCP folders are
packed as the dcp harness expects: [u32 len(.metadata)][u32 len(__0_0.distcp)][.metadata][__0_0][__1_0].
Run once by hand with the interop venv; the seeds are committed.
"""

import io
import os
import struct
import sys
from pathlib import Path

import torch

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent / "Tests" / "interop" / "producers"))
import generate  # noqa: E402

root = generate.generate(["zero1_fp32_frozen", "zero2_bf16_frozen", "zero3_bf16", "dcp_fsdp1_odd", "dcp_fsdp2_odd", "dcp_tp_split"])
out = here.parent / "Tests" / "fuzz" / "seeds"
(out / "zero").mkdir(parents=True, exist_ok=True)
(out / "dcp").mkdir(parents=True, exist_ok=True)


def shrink(value):
    if isinstance(value, torch.Tensor):
        small = value.detach().reshape(-1)[:4].clone() if value.dim() > 0 else value.detach().clone()
        for key, attr in getattr(value, "__dict__", {}).items():
            setattr(small, key, attr)
        return small
    if isinstance(value, dict):
        made = type(value)() if type(value) is not dict else {}
        for k, v in value.items():
            made[k] = shrink(v)
        return made
    if isinstance(value, list):
        return [shrink(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(shrink(v) for v in value)
    return value


for case in ("zero1_fp32_frozen", "zero2_bf16_frozen", "zero3_bf16"):
    tag = root / case / "checkpoint-2" / "global_step2"
    for path in sorted(tag.glob("*rank_0*_states.pt")) + sorted(tag.glob("mp_rank_00_model_states.pt")):
        state = torch.load(path, map_location="cpu", weights_only=False)
        state.pop("ds_config", None)
        buf = io.BytesIO()
        torch.save(shrink(state), buf)
        (out / "zero" / f"{case}-{path.stem}.pt").write_bytes(buf.getvalue())

for case in ("dcp_fsdp1_odd", "dcp_fsdp2_odd", "dcp_tp_split"):
    folder = root / case / "dcp"
    meta = (folder / ".metadata").read_bytes()
    first = (folder / "__0_0.distcp").read_bytes()
    second = (folder / "__1_0.distcp").read_bytes()
    (out / "dcp" / f"{case}.bin").write_bytes(struct.pack("<II", len(meta), len(first)) + meta + first + second)
print("seeds written to", out)
