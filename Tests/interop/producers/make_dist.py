"""Makes one real distributed checkpoint on CPU (run under `torchrun --nproc_per_node=2`, gloo).

    torchrun --standalone --nproc_per_node=2 make_dist.py CASE OUTDIR

CASE is one of CASES below. DeepSpeed ZeRO cases train a tiny GPT-2 with HF Trainer + DeepSpeed for two steps
and save checkpoint-2/; trainer FSDP cases do the same with accelerate FSDP SHARDED_STATE_DICT; dcp cases call
torch.distributed.checkpoint.save on an FSDP1/FSDP2 module with odd shapes (empty shards). The CPU
workarounds are those of reference/distributed-checkpoints.md. Nothing here is faked: these are the files the
real producers write.
"""

import importlib
import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

# case: (kind, options)
CASES = {
    "zero1_fp32_frozen": ("zero", {"stage": 1, "bf16": False, "frozen": True}),
    "zero1_bf16": ("zero", {"stage": 1, "bf16": True, "frozen": False}),
    "zero2_fp32": ("zero", {"stage": 2, "bf16": False, "frozen": False}),
    "zero2_bf16_frozen": ("zero", {"stage": 2, "bf16": True, "frozen": True}),
    "zero3_fp32_frozen": ("zero", {"stage": 3, "bf16": False, "frozen": True}),
    "zero3_bf16": ("zero", {"stage": 3, "bf16": True, "frozen": False}),
    "trainer_fsdp1": ("trainer_fsdp", {"version": 1}),
    "trainer_fsdp2": ("trainer_fsdp", {"version": 2}),
    "dcp_fsdp2_odd": ("dcp", {"version": 2}),
    "dcp_fsdp1_odd": ("dcp", {"version": 1}),
    "dcp_tp_split": ("dcp_tp", {}),
}


def gpt2_config():
    from transformers import GPT2Config

    # Odd sizes so that padding and uneven splits show; lm_head is tied to wte.
    return GPT2Config(vocab_size=251, n_positions=62, n_embd=63, n_layer=2, n_head=3, bos_token_id=0, eos_token_id=0)


def dataset():
    import torch

    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(16):
        ids = torch.randint(0, 251, (12,), generator=g)
        rows.append({"input_ids": ids, "labels": ids.clone()})
    return rows


def make_model(frozen=False):
    import torch
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(gpt2_config())
    if frozen:
        model.transformer.wpe.weight.requires_grad_(False)
    return model


def trainer_args(out, **extra):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=2,
        save_steps=2,
        save_strategy="steps",
        logging_steps=100,
        report_to=[],
        learning_rate=1e-2,
        weight_decay=0.1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        accelerator_config={"use_configured_state": True},
        **extra,
    )


def run_zero(out, stage, bf16, frozen):
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    # Workaround 3: gloo does the collectives; skip the ~50 s JIT build of the shm op.
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    if bf16:
        import transformers.training_args

        transformers.training_args.is_torch_bf16_gpu_available = lambda: True
    from accelerate import PartialState
    from transformers import Trainer

    PartialState(backend="gloo")  # workaround 1
    ds = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": bool(bf16)},
        "zero_optimization": {"stage": stage, "stage3_gather_16bit_weights_on_model_save": False},
    }
    model = make_model(frozen)
    trainer = Trainer(model=model, args=trainer_args(out, deepspeed=ds, bf16=bf16), train_dataset=dataset())
    trainer.train()


def run_trainer_fsdp(out, version):
    from accelerate import PartialState
    from accelerate.utils import DistributedType
    from transformers import Trainer

    ps = PartialState(backend="gloo")  # workaround 4
    ps.distributed_type = DistributedType.MULTI_GPU
    cfg = {
        "version": version,
        "state_dict_type": "SHARDED_STATE_DICT",
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": ["GPT2Block"],
    }
    if version == 1:
        cfg["sync_module_states"] = False
    else:
        cfg["reshard_after_forward"] = True
    model = make_model(False)
    args = trainer_args(out, fsdp="full_shard", fsdp_config=cfg)
    trainer = Trainer(model=model, args=args, train_dataset=dataset())
    trainer.train()


def odd_module():
    """Odd shapes: a 1-row parameter (one rank holds an empty shard), a 3-element one, 0-dim and int/bool buffers."""
    import torch
    from torch import nn

    class OddNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(251, 63)
            self.proj = nn.Linear(63, 5)
            self.one_row = nn.Parameter(torch.randn(1, 7))
            self.register_buffer("scalar", torch.tensor(0.25))
            self.tiny = nn.Parameter(torch.randn(3))
            self.register_buffer("steps", torch.arange(4, dtype=torch.int64))
            self.register_buffer("mask", torch.tensor([True, False, True]))

        def forward(self, x):
            return self.proj(self.emb(x)) * self.scalar

    torch.manual_seed(0)
    return OddNet()


def run_dcp(out, version):
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = odd_module()
    if version == 2:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        fully_shard(model, mesh=mesh)
        sd = model.state_dict()
        full = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone() for k, v in sd.items()}
        dcp.save(sd, checkpoint_id=out)
    else:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import StateDictType

        fsdp = FSDP(model, device_id=torch.device("cpu"), use_orig_params=True)
        with FSDP.state_dict_type(fsdp, StateDictType.SHARDED_STATE_DICT):
            sd = fsdp.state_dict()
            dcp.save(sd, checkpoint_id=out)
        with FSDP.state_dict_type(fsdp, StateDictType.FULL_STATE_DICT):
            full = {k: v.detach().clone() for k, v in fsdp.state_dict().items()}
    if rank == 0:
        # The live model's gathered state dict, for the fixture's own sanity check.
        torch.save(full, os.path.join(os.path.dirname(out), "live_state_dict.pt"))
    dist.barrier()
    dist.destroy_process_group()


def run_dcp_tp(out):
    """DTensors split along later dimensions (tensor-parallel style Shard(1)/Shard(2), uneven), saved with dcp.save."""
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    g = torch.Generator().manual_seed(0)
    full = {
        "col.weight": (torch.randn(5, 7, generator=g), Shard(1)),
        "cube": (torch.randn(3, 4, 5, generator=g), Shard(1)),
        "last": (torch.randn(2, 3, 5, generator=g).to(torch.bfloat16), Shard(2)),
        "rows": (torch.randn(9, 2, generator=g), Shard(0)),
        "rep": (torch.arange(6, dtype=torch.int64), Replicate()),
    }
    sd = {k: distribute_tensor(t, mesh, [p]) for k, (t, p) in full.items()}
    dcp.save(sd, checkpoint_id=out)
    if dist.get_rank() == 0:
        torch.save({k: t for k, (t, _) in full.items()}, os.path.join(os.path.dirname(out), "live_state_dict.pt"))
    dist.barrier()
    dist.destroy_process_group()


def main():
    case, out = sys.argv[1], sys.argv[2]
    kind, options = CASES[case]
    if kind == "zero":
        run_zero(out, **options)
    elif kind == "trainer_fsdp":
        run_trainer_fsdp(out, **options)
    elif kind == "dcp_tp":
        run_dcp_tp(os.path.join(out, "dcp"))
    else:
        run_dcp(os.path.join(out, "dcp"), **options)


if __name__ == "__main__":
    main()
