"""What users do today: load the whole model in Python and save it in the other format.

Usage: python_route.py st2bin|bin2st SRC_DIR OUT_DIR
"""

import os
import sys

import torch
from safetensors.torch import load_file, save_file


def main():
    route, src, out = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if route == "st2bin" and name.endswith(".safetensors"):
            target = name.replace("model", "pytorch_model", 1).replace(".safetensors", ".bin")
            torch.save(load_file(path), os.path.join(out, target))
        elif route == "bin2st" and name.endswith(".bin"):
            target = name.replace("pytorch_model", "model", 1).replace(".bin", ".safetensors")
            sd = torch.load(path, weights_only=True)
            save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, target), metadata={"format": "pt"})
    # Durable like ckptd's output (which fsyncs every file before renaming it into place).
    for name in os.listdir(out):
        fd = os.open(os.path.join(out, name), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


if __name__ == "__main__":
    main()
