"""Writes the fuzzers' seed corpora (Tests/fuzz/seeds/) from files made by the real torch and safetensors.

Run once by hand with the interop venv; the seeds are committed (a few KiB each).
"""

import io
import os
import sys
import zipfile
from collections import OrderedDict

import torch
from safetensors.torch import save

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "Tests", "fuzz", "seeds")
for sub in ("safetensors", "zip", "pickle"):
    os.makedirs(os.path.join(out, sub), exist_ok=True)

base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
dicts = {
    "plain": {"a": base, "b": torch.tensor(3, dtype=torch.int64), "e": torch.zeros(0, 3)},
    "dtypes": {d: torch.ones(2, 2).to(getattr(torch, d)) for d in
               ("float16", "bfloat16", "uint8", "int8", "int16", "int32", "bool", "float64", "uint16",
                "float8_e4m3fn")},
    "views": {"t": base.t(), "s": base[1:3, ::2], "x": torch.ones(1, 3).expand(4, 3), "w": base},
    "tied": {"emb": base, "lm_head": base},
    "ordered": torch.nn.Linear(3, 2).state_dict(),
    "param": {"p": torch.nn.Parameter(torch.ones(3))},
    "wrapped": {"state_dict": OrderedDict(w=torch.ones(2))},
}
for name, sd in dicts.items():
    buf = io.BytesIO()
    torch.save(sd, buf)
    data = buf.getvalue()
    open(os.path.join(out, "zip", name + ".bin"), "wb").write(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
        open(os.path.join(out, "pickle", name + ".pkl"), "wb").write(z.read(pkl))
    plain = {k: v.contiguous().clone() for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if name != "tied" and plain:
        open(os.path.join(out, "safetensors", name + ".safetensors"), "wb").write(
            save(plain, metadata={"format": "pt"}))
legacy = io.BytesIO()
torch.save(dicts["plain"], legacy, _use_new_zipfile_serialization=False)
open(os.path.join(out, "pickle", "legacy.bin"), "wb").write(legacy.getvalue())
print("seeds written to", out)
