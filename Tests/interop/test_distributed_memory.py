"""Peak RSS of consolidation stays flat (issue 12): a 256 MiB ZeRO-2 and ZeRO-3 model (real DeepSpeed files from the
fixture cache, re-saved with 64 parameters of 1024x1024 fp32 spread over the two ranks' flat partitions, so every
other parameter crosses the rank boundary) is consolidated by ckptd under 64 MiB, with verification on, and the
output equals the parameters the partitions were built from.
"""

import shutil
import subprocess
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from test_distributed import fixtures, source_folder  # noqa: F401  (session fixture)

RSS_LIMIT_MIB = 64
PARAMS, ROWS, COLS = 64, 1024, 1024


def peak_rss_mib(binary, args):
    proc = subprocess.run(["/usr/bin/time", "-f", "ckptd-maxrss-kb=%M", str(binary), *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    marks = [line for line in proc.stderr.splitlines() if line.startswith("ckptd-maxrss-kb=")]
    assert proc.returncode == 0 and marks, proc.stderr
    return int(marks[-1].split("=")[1]) / 1024


def enlarge(folder: Path, stage: int, full: torch.Tensor):
    """Rewrites the fixture's rank files (DeepSpeed's own pickles, re-saved by torch) for the big model."""
    tag = folder / "global_step2"
    shapes = OrderedDict((f"layer{i}.weight", torch.Size([ROWS, COLS])) for i in range(PARAMS))
    models = sorted(tag.glob("*_model_states.pt"))
    for path in models:
        states = torch.load(path, map_location="cpu", weights_only=False)
        states["param_shapes"] = [shapes]
        states["module"] = OrderedDict()
        states["buffer_names"] = []
        states["shared_params"] = {}
        states["frozen_param_shapes"] = None if stage < 3 else OrderedDict()
        states["frozen_param_fragments"] = None if stage < 3 else {}
        torch.save(states, path)
    for rank, path in enumerate(sorted(tag.glob("*_optim_states.pt"))):
        states = torch.load(path, map_location="cpu", weights_only=False)
        osd = states["optimizer_state_dict"]
        osd.pop("optimizer_state_dict", None)
        osd.pop("base_optimizer_state", None)
        if stage < 3:
            half = full.numel() // 2
            osd["single_partition_of_fp32_groups"] = [full[rank * half:(rank + 1) * half].clone()]
            osd["partition_count"] = [2]
            osd["param_alignment_paddings"] = [[0] * PARAMS]
        else:
            # Each parameter: its first half on rank 0, its second half on rank 1, at the same offset.
            per = full.view(PARAMS, 2, -1)[:, rank, :].reshape(-1).clone()
            osd["fp32_flat_groups"] = [per]
            osd["partition_count"] = 2
        torch.save(states, path)


@pytest.mark.parametrize("case,stage", [("zero2_fp32", 2), ("zero3_fp32_frozen", 3)])
def test_consolidation_memory_is_flat(fixtures, ckptd_bin, tmp_path, case, stage):  # noqa: F811
    if shutil.which("time", path="/usr/bin") is None:
        pytest.fail("/usr/bin/time is missing (apt-get install time): it measures the peak RSS")
    folder = tmp_path / "checkpoint-2"
    shutil.copytree(source_folder(fixtures, case), folder)
    for name in ("model.safetensors",):
        (folder / name).unlink(missing_ok=True)
    full = torch.randn(PARAMS * ROWS * COLS, generator=torch.Generator().manual_seed(stage))
    enlarge(folder, stage, full)
    out = tmp_path / "out"
    rss = peak_rss_mib(ckptd_bin, ["convert", folder, "--to", "safetensors", "--out", out])
    assert rss < RSS_LIMIT_MIB, f"peak RSS {rss:.1f} MiB for a {full.numel() * 4 >> 20} MiB model"
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert sorted(f.keys()) == sorted(f"layer{i}.weight" for i in range(PARAMS))
        for i in (0, 1, PARAMS // 2, PARAMS - 1):
            want = full[i * ROWS * COLS:(i + 1) * ROWS * COLS].view(ROWS, COLS)
            assert torch.equal(f.get_tensor(f"layer{i}.weight"), want), i
