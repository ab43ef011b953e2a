"""Makes the GPT-2-small-shaped distributed checkpoints `scripts/bench/dist_bench.py` measures (run under
`torchrun --nproc_per_node=2`): ZeRO-2 and ZeRO-3 via HF Trainer + DeepSpeed (one step, fp32), and an FSDP2
(`fully_shard`) model saved with `torch.distributed.checkpoint.save`. Same CPU workarounds as the test producers
(Tests/interop/producers/make_dist.py), whose functions are reused with the model swapped.

    torchrun --standalone --nproc_per_node=2 make_dist_bench.py {zero2|zero3|fsdp2} OUTDIR
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tests" / "interop" / "producers"))
import make_dist  # noqa: E402


def gpt2_small():
    from transformers import GPT2Config

    # GPT-2 small: 124.4M parameters, 0.5 GB of fp32 weights.
    return GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)


def dataset():
    import torch

    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 50257, (32,), generator=g) for _ in range(4)]
    return [{"input_ids": i, "labels": i.clone()} for i in ids]


def fsdp2(out):
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import GPT2LMHeadModel

    dist.init_process_group("gloo")
    model = GPT2LMHeadModel(gpt2_small())
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    dcp.save(model.state_dict(), checkpoint_id=out)
    dist.barrier()
    dist.destroy_process_group()


def main():
    case, out = sys.argv[1], sys.argv[2]
    make_dist.gpt2_config = gpt2_small
    make_dist.dataset = dataset
    if case == "fsdp2":
        fsdp2(os.path.join(out, "dcp"))
        return
    stage = {"zero2": 2, "zero3": 3}[case]
    orig = make_dist.trainer_args

    def one_step(out_dir, **extra):
        args = orig(out_dir, **extra)
        args.max_steps = 1
        args.save_steps = 1
        args.per_device_train_batch_size = 1
        return args

    make_dist.trainer_args = one_step
    make_dist.run_zero(out, stage=stage, bf16=False, frozen=False)


if __name__ == "__main__":
    main()
