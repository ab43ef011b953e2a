"""Issue 3: whole checkpoint folders made by real transformers / PEFT / FlagEmbedding-style code, converted by
`ckptd convert DIR --to ...`, loaded back by from_pretrained (identical logits) and compared bit for bit."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import models
from interop_helpers import (
    assert_same_dict,
    assert_same_tensor,
    convert,
    convert_folder_checked,
    copy_files,
    load_any,
    load_bin,
    load_st,
    load_st_open,
    random_tensor,
    snapshot,
    temp_leftovers,
)

# ---------------------------------------------------------------------------------------------------------------
# Source folders, built once per session and copied by each test.


@pytest.fixture(scope="session")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    made = {}

    bert = models.bert()
    bert.save_pretrained(root / "bert")
    bert.save_pretrained(root / "bert_sharded", max_shard_size="20KB")
    made["bert"], made["bert_sharded"] = root / "bert", root / "bert_sharded"

    gpt2 = models.gpt2()
    sd = gpt2.state_dict()
    folder = root / "gpt2_bin"
    folder.mkdir()
    gpt2.config.save_pretrained(folder)
    torch.save(sd, folder / "pytorch_model.bin")
    made["gpt2_bin"] = folder

    folder = root / "gpt2_sharded_bin"
    folder.mkdir()
    gpt2.config.save_pretrained(folder)
    models.save_sharded_bin(sd, folder, 20_000)
    made["gpt2_sharded_bin"] = folder

    folder = root / "flag"
    bert.save_pretrained(folder)
    torch.manual_seed(5)
    torch.save(torch.nn.Linear(32, 32).state_dict(), folder / "colbert_linear.pt")
    torch.save(torch.nn.Linear(32, 1).state_dict(), folder / "sparse_linear.pt")
    made["flag"] = folder
    return made


def fresh(sources, name, tmp_path) -> Path:
    dst = tmp_path / name
    shutil.copytree(sources[name], dst)
    return dst


def assert_same_logits(cls, source_folder, converted_folder):
    want = models.logits(models.load_model(cls, source_folder))
    got = models.logits(models.load_model(cls, converted_folder))
    assert torch.equal(got, want), "converted checkpoint gives different logits"


def folder_tensors(folder: Path, suffix: str) -> dict:
    out = {}
    for path in sorted(folder.glob(f"*{suffix}")):
        out.update(load_any(path))
    return out


# ---------------------------------------------------------------------------------------------------------------
# BERT (safetensors, single file and sharded)


def test_bert_safetensors_to_bin_loads_with_identical_logits(sources, tmp_path, run_ckptd):
    from transformers import BertForMaskedLM

    src = fresh(sources, "bert", tmp_path)
    new = convert_folder_checked(run_ckptd, src, "bin")
    assert new == {"pytorch_model.bin"}
    assert_same_dict(load_bin(src / "pytorch_model.bin"), load_st(src / "model.safetensors"))
    assert_same_dict(load_bin(src / "pytorch_model.bin", mmap=True), load_st(src / "model.safetensors"))
    only = copy_files(src, tmp_path / "only_bin", ["config.json", "pytorch_model.bin"])
    assert_same_logits(BertForMaskedLM, sources["bert"], only)

    # and back: every name bit for bit
    back = copy_files(only, tmp_path / "back", ["config.json", "pytorch_model.bin"])
    assert convert_folder_checked(run_ckptd, back, "safetensors") == {"model.safetensors"}
    assert_same_dict(load_st(back / "model.safetensors"), load_st(src / "model.safetensors"))
    _, meta = load_st_open(back / "model.safetensors")
    assert meta.get("format") == "pt"


def test_folder_already_in_target_format_is_left_untouched(sources, tmp_path, run_ckptd):
    src = fresh(sources, "bert", tmp_path)
    assert convert_folder_checked(run_ckptd, src, "safetensors") == set()


def test_bert_sharded_both_ways(sources, tmp_path, run_ckptd):
    from transformers import BertForMaskedLM

    src = fresh(sources, "bert_sharded", tmp_path)
    st_index = json.loads((src / "model.safetensors.index.json").read_text())
    st_files = sorted(set(st_index["weight_map"].values()))
    assert len(st_files) > 1, "fixture should be sharded"
    new = convert_folder_checked(run_ckptd, src, "bin")
    bin_files = [f.replace("model-", "pytorch_model-").replace(".safetensors", ".bin") for f in st_files]
    assert new == set(bin_files) | {"pytorch_model.bin.index.json"}
    bin_index = json.loads((src / "pytorch_model.bin.index.json").read_text())
    assert bin_index["weight_map"] == {
        k: v.replace("model-", "pytorch_model-").replace(".safetensors", ".bin")
        for k, v in st_index["weight_map"].items()
    }
    assert bin_index["metadata"]["total_size"] == st_index["metadata"]["total_size"]
    for st_name, bin_name in zip(st_files, bin_files):
        assert_same_dict(load_bin(src / bin_name), load_st(src / st_name), f"{bin_name}: ")

    only = copy_files(src, tmp_path / "only_bin", ["config.json", "pytorch_model.bin.index.json", *bin_files])
    assert_same_logits(BertForMaskedLM, sources["bert_sharded"], only)

    back = copy_files(only, tmp_path / "back", ["config.json", "pytorch_model.bin.index.json", *bin_files])
    new = convert_folder_checked(run_ckptd, back, "safetensors")
    assert new == set(st_files) | {"model.safetensors.index.json"}
    back_index = json.loads((back / "model.safetensors.index.json").read_text())
    assert back_index["weight_map"] == st_index["weight_map"]
    for name in st_files:
        assert_same_dict(load_st(back / name), load_st(src / name), f"{name}: ")


def test_remove_source_removes_only_source_weights_and_index(sources, tmp_path, run_ckptd):
    from transformers import BertForMaskedLM

    src = fresh(sources, "bert_sharded", tmp_path)
    (src / "trainer_state.json").write_text("{}")
    (src / "optimizer.pt").write_bytes(b"opaque optimizer state")
    (src / "notes.txt").write_text("keep me")
    weights = {p.name for p in src.glob("model*.safetensors")} | {"model.safetensors.index.json"}
    new = convert_folder_checked(run_ckptd, src, "bin", "--remove-source", removed=weights)
    assert new and all(n.startswith("pytorch_model") for n in new)
    assert {p.name for p in src.iterdir()} == new | {"config.json", "trainer_state.json", "optimizer.pt", "notes.txt"}
    assert_same_logits(BertForMaskedLM, sources["bert_sharded"], src)


# ---------------------------------------------------------------------------------------------------------------
# GPT-2 with lm_head tied to wte, written as a .bin the way older transformers did


def test_gpt2_tied_bin_to_safetensors_and_back(sources, tmp_path, run_ckptd):
    from transformers import GPT2LMHeadModel

    src = fresh(sources, "gpt2_bin", tmp_path)
    original = load_bin(src / "pytorch_model.bin")
    assert original["lm_head.weight"].data_ptr() == original["transformer.wte.weight"].data_ptr()
    assert convert_folder_checked(run_ckptd, src, "safetensors") == {"model.safetensors"}
    st, meta = load_st_open(src / "model.safetensors")
    tied = {"lm_head.weight", "transformer.wte.weight"}
    assert len(tied & set(st)) == 1, "tied weight must be written once"
    (dropped,) = tied - set(st)
    (kept,) = tied & set(st)
    # Like transformers' own save: the input embedding is kept, the tied head is the alias.
    assert kept == "transformer.wte.weight", kept
    assert meta.get(dropped) == kept and meta.get("format") == "pt", meta
    assert set(st) == set(original) - {dropped}
    assert_same_dict(st, {k: v for k, v in original.items() if k != dropped})

    only = copy_files(src, tmp_path / "only_st", ["config.json", "model.safetensors"])
    assert_same_logits(GPT2LMHeadModel, sources["gpt2_bin"], only)

    back = copy_files(only, tmp_path / "back", ["config.json", "model.safetensors"])
    assert convert_folder_checked(run_ckptd, back, "bin") == {"pytorch_model.bin"}
    again = load_bin(back / "pytorch_model.bin")
    assert_same_dict(again, original)
    assert again["lm_head.weight"].untyped_storage().data_ptr() == again["transformer.wte.weight"].untyped_storage().data_ptr()
    assert_same_logits(GPT2LMHeadModel, sources["gpt2_bin"], back)


def test_gpt2_sharded_bin_with_index_to_safetensors_and_back(sources, tmp_path, run_ckptd):
    from transformers import GPT2LMHeadModel

    src = fresh(sources, "gpt2_sharded_bin", tmp_path)
    bin_index = json.loads((src / "pytorch_model.bin.index.json").read_text())
    bin_files = sorted(set(bin_index["weight_map"].values()))
    assert len(bin_files) > 1
    original = folder_tensors(src, ".bin")
    new = convert_folder_checked(run_ckptd, src, "safetensors")
    st_files = [f.replace("pytorch_model-", "model-").replace(".bin", ".safetensors") for f in bin_files]
    assert new == set(st_files) | {"model.safetensors.index.json"}
    st_index = json.loads((src / "model.safetensors.index.json").read_text())
    assert st_index["weight_map"] == {
        k: v.replace("pytorch_model-", "model-").replace(".bin", ".safetensors") for k, v in bin_index["weight_map"].items()
    }, "weight_map must keep every name (dropped tied names included) in the same partition"
    assert st_index["metadata"]["total_size"] == bin_index["metadata"]["total_size"]
    for bin_name, st_name in zip(bin_files, st_files):
        st = load_st(src / st_name)
        assert set(st) <= {k for k, v in bin_index["weight_map"].items() if v == bin_name}
        assert_same_dict(st, {k: original[k] for k in st}, f"{st_name}: ")

    only = copy_files(src, tmp_path / "only_st", ["config.json", "model.safetensors.index.json", *st_files])
    assert_same_logits(GPT2LMHeadModel, sources["gpt2_sharded_bin"], only)

    back = copy_files(only, tmp_path / "back", ["config.json", "model.safetensors.index.json", *st_files])
    convert_folder_checked(run_ckptd, back, "bin")
    assert json.loads((back / "pytorch_model.bin.index.json").read_text())["weight_map"] == bin_index["weight_map"]
    again = folder_tensors(back, ".bin")
    assert_same_dict(again, original)
    assert again["lm_head.weight"].untyped_storage().data_ptr() == again["transformer.wte.weight"].untyped_storage().data_ptr()


def test_failure_in_a_later_shard_leaves_no_temporary(sources, tmp_path, run_ckptd):
    src = fresh(sources, "gpt2_sharded_bin", tmp_path)
    last = sorted(src.glob("pytorch_model-*.bin"))[-1]
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    before = snapshot(src)
    rc, out, err = run_ckptd("convert", src, "--to", "safetensors")
    assert rc == 1, f"rc={rc} {out} {err}"
    assert last.name in err
    assert not temp_leftovers(src), temp_leftovers(src)
    after = snapshot(src)
    assert {k: v for k, v in after.items() if k in before} == before, "source files changed"
    assert "model.safetensors.index.json" not in after, "an index was published for a failed conversion"


# ---------------------------------------------------------------------------------------------------------------
# PEFT adapter and a FlagEmbedding-style folder


def test_peft_adapter_both_ways(tmp_path, run_ckptd):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import GPT2LMHeadModel

    base_dir = tmp_path / "base"
    models.gpt2().save_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False)
    torch.manual_seed(3)
    peft_model = get_peft_model(models.load_model(GPT2LMHeadModel, base_dir), config).eval()
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    assert (adapter / "adapter_model.safetensors").exists()
    want = models.logits(peft_model)

    new = convert_folder_checked(run_ckptd, adapter, "bin")
    assert new == {"adapter_model.bin"}
    original = load_st(adapter / "adapter_model.safetensors")
    assert_same_dict(load_bin(adapter / "adapter_model.bin"), original)

    only = copy_files(adapter, tmp_path / "only_bin", ["adapter_config.json", "adapter_model.bin"])
    loaded = PeftModel.from_pretrained(models.load_model(GPT2LMHeadModel, base_dir), str(only)).eval()
    assert torch.equal(models.logits(loaded), want), "adapter from .bin gives different logits"

    back = copy_files(only, tmp_path / "back", ["adapter_config.json", "adapter_model.bin"])
    assert convert_folder_checked(run_ckptd, back, "safetensors") == {"adapter_model.safetensors"}
    assert_same_dict(load_st(back / "adapter_model.safetensors"), original)
    loaded = PeftModel.from_pretrained(models.load_model(GPT2LMHeadModel, base_dir), str(back)).eval()
    assert torch.equal(models.logits(loaded), want)


def test_flagembedding_folder_to_safetensors(sources, tmp_path, run_ckptd):
    src = fresh(sources, "flag", tmp_path)
    new = convert_folder_checked(run_ckptd, src, "safetensors")
    assert new == {"colbert_linear.safetensors", "sparse_linear.safetensors"}
    for name in ("colbert_linear", "sparse_linear"):
        want = load_bin(src / f"{name}.pt")
        got, meta = load_st_open(src / f"{name}.safetensors")
        assert_same_dict(got, want, f"{name}: ")
        assert meta.get("format") == "pt"
        linear = torch.nn.Linear(32, want["weight"].shape[0])
        linear.load_state_dict(got)


def test_flagembedding_folder_to_bin(sources, tmp_path, run_ckptd):
    from transformers import BertForMaskedLM

    src = fresh(sources, "flag", tmp_path)
    new = convert_folder_checked(run_ckptd, src, "bin")
    assert new == {"pytorch_model.bin"}
    only = copy_files(src, tmp_path / "only_bin", ["config.json", "pytorch_model.bin"])
    assert_same_logits(BertForMaskedLM, sources["flag"], only)


# ---------------------------------------------------------------------------------------------------------------
# dtype casts match torch's own .to(dtype) bit for bit


def assert_cast_equal(got: torch.Tensor, source: torch.Tensor, target: torch.dtype, name: str):
    if source.is_floating_point() and source.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        want = source.to(target)
        assert got.dtype == target, f"{name}: {got.dtype} != {target}"
        nan = torch.isnan(want)
        assert torch.equal(torch.isnan(got), nan), f"{name}: NaN positions differ"
        assert_same_tensor(got[~nan], want[~nan], name)
    else:
        assert_same_tensor(got, source, name)


@pytest.mark.parametrize("dtype_arg, target", [("bf16", torch.bfloat16), ("f16", torch.float16)])
def test_folder_cast_matches_torch(sources, tmp_path, run_ckptd, dtype_arg, target):
    from transformers import BertForMaskedLM

    src = fresh(sources, "bert_sharded", tmp_path)
    original = folder_tensors(src, ".safetensors")
    convert_folder_checked(run_ckptd, src, "bin", "--dtype", dtype_arg)
    got = folder_tensors(src, ".bin")
    assert set(got) == set(original)
    for name, tensor in original.items():
        assert_cast_equal(got[name], tensor, target, name)
    index = json.loads((src / "pytorch_model.bin.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in got.values())
    files = ["config.json", "pytorch_model.bin.index.json", *(p.name for p in src.glob("pytorch_model-*.bin"))]
    only = copy_files(src, tmp_path / "only", files)
    model = models.load_model(BertForMaskedLM, only)  # config.json still says float32: loads upcast
    assert_same_tensor(model.bert.embeddings.word_embeddings.weight.detach(), got["bert.embeddings.word_embeddings.weight"].float(), "loaded")


def test_cast_from_bf16_to_f32(tmp_path, run_ckptd):
    model = models.bert().to(torch.bfloat16)
    src = tmp_path / "bf16"
    model.save_pretrained(src)
    original = load_st(src / "model.safetensors")
    convert_folder_checked(run_ckptd, src, "bin", "--dtype", "f32")
    got = load_bin(src / "pytorch_model.bin")
    assert set(got) == set(original)
    for name, tensor in original.items():
        assert_cast_equal(got[name], tensor, torch.float32, name)


def special_values(dtype: torch.dtype) -> torch.Tensor:
    f32 = torch.tensor(
        [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 65504.0, 65520.0, 1e-8, 6e-8, 1e-40,
         3.4e38, -3.4e38, 1.00390625, 1.01171875, 1.0009765625, 2.0009765625],
        dtype=torch.float64 if dtype == torch.float64 else torch.float32,
    )
    return torch.cat([f32.to(dtype), random_tensor(dtype, (4096,), seed=9)])


@pytest.mark.parametrize("source", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dtype_arg, target", [("bf16", torch.bfloat16), ("f16", torch.float16), ("f32", torch.float32)])
def test_file_cast_special_values(tmp_path, run_ckptd, source, dtype_arg, target):
    sd = {
        "x": special_values(source),
        "scalar": torch.tensor(1.5, dtype=source),
        "ids": torch.arange(-3, 3),
        "mask": torch.tensor([True, False]),
        "fp8": torch.randn(8).to(torch.float8_e4m3fn),
        "u8": torch.arange(4, dtype=torch.uint8),
    }
    save_file(sd, tmp_path / "w.safetensors")
    convert(run_ckptd, tmp_path / "w.safetensors", "bin", "--dtype", dtype_arg)
    got = load_bin(tmp_path / "w.bin")
    assert set(got) == set(sd)
    for name, tensor in sd.items():
        assert_cast_equal(got[name], tensor, target, name)


# ---------------------------------------------------------------------------------------------------------------
# Trainer resumes from a checkpoint converted safetensors -> .bin with --remove-source


def run_trainer(output_dir: Path, max_steps: int, resume=None):
    from transformers import Trainer, TrainingArguments

    gen = torch.Generator().manual_seed(7)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, models.VOCAB, (16, 12), generator=gen)]
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        save_steps=2,
        save_strategy="steps",
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=models.gpt2(seed=11), args=args, train_dataset=data)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return trainer


def test_trainer_resumes_from_converted_checkpoint(tmp_path, run_ckptd):
    run_trainer(tmp_path / "run", max_steps=2)
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert (checkpoint / "model.safetensors").exists()
    plain = tmp_path / "plain" / "checkpoint-2"
    converted = tmp_path / "converted" / "checkpoint-2"
    shutil.copytree(checkpoint, plain)
    shutil.copytree(checkpoint, converted)
    os.utime(converted, ns=(os.stat(checkpoint).st_atime_ns, os.stat(checkpoint).st_mtime_ns))

    new = convert_folder_checked(run_ckptd, converted, "bin", "--remove-source", removed={"model.safetensors"})
    assert new == {"pytorch_model.bin"}
    for name in ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin"):
        if (plain / name).exists():
            assert (converted / name).read_bytes() == (plain / name).read_bytes()

    a = run_trainer(tmp_path / "plain", max_steps=4, resume=plain)
    b = run_trainer(tmp_path / "converted", max_steps=4, resume=converted)
    assert a.state.global_step == b.state.global_step == 4
    assert_same_dict(b.model.state_dict(), a.model.state_dict(), "resumed model: ")
