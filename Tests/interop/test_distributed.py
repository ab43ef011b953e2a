"""Distributed checkpoints (issue 12): real DeepSpeed ZeRO 1/2/3 and FSDP/DCP checkpoints, consolidated by ckptd and
compared bit for bit with the reference tools (DeepSpeed's zero_to_fp32.py, torch's dcp_to_torch_save).

The checkpoints come from Tests/interop/producers/ (HF Trainer + DeepSpeed, Trainer + accelerate FSDP1/FSDP2
SHARDED_STATE_DICT, torch.distributed.checkpoint.save of FSDP1/FSDP2 modules with odd shapes), run under torchrun
with 2 ranks on gloo, and are cached in ~/.cache/ckptd/dist-fixtures/<hash of the producers>/ (generated on the
first run, a few minutes; reused afterwards).
"""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from interop_helpers import assert_one_line_error, assert_same_dict, assert_same_tensor, load_bin, load_st_open

sys.path.insert(0, str(Path(__file__).resolve().parent / "producers"))
import generate  # noqa: E402
from make_dist import CASES, gpt2_config  # noqa: E402

ZERO = [c for c, (kind, _) in CASES.items() if kind == "zero"]
TRAINER_FSDP = [c for c, (kind, _) in CASES.items() if kind == "trainer_fsdp"]
DCP = [c for c, (kind, _) in CASES.items() if kind.startswith("dcp")]
TIED = ("lm_head.weight", "transformer.wte.weight")


@pytest.fixture(scope="session")
def fixtures():
    return generate.generate()


def source_folder(root: Path, case: str) -> Path:
    return root / case / ("dcp" if CASES[case][0].startswith("dcp") else "checkpoint-2")


def reference(root: Path, case: str) -> dict:
    """What the reference tool wrote for this case, names as the tool gives them (Trainer DCP: under 'model')."""
    kind = CASES[case][0]
    if kind == "zero":
        return load_bin(root / case / "ref" / "pytorch_model.bin")
    sd = torch.load(root / case / "ref" / "dcp.pt", map_location="cpu", weights_only=True)
    return dict(sd["model"]) if kind == "trainer_fsdp" else dict(sd)


def consolidate(run_ckptd, folder, out, to, *extra):
    rc, stdout, err = run_ckptd("convert", str(folder), "--to", to, "--out", str(out), *extra)
    assert rc == 0, f"rc={rc}\nstdout={stdout}\nstderr={err}"
    return out / ("model.safetensors" if to == "safetensors" else "pytorch_model.bin")


def zero1_frozen_extra(root: Path, case: str) -> dict:
    """ZeRO-1 frozen parameters, which zero_to_fp32.py drops: their only copy is model_states' module."""
    states = torch.load(
        root / case / "checkpoint-2" / "global_step2" / "mp_rank_00_model_states.pt", map_location="cpu",
        weights_only=True)
    shapes = {n for group in states["param_shapes"] for n in group}
    skip = shapes | set(states["buffer_names"]) | set(states["shared_params"])
    return {n: t for n, t in states["module"].items() if n not in skip}


def expected(root: Path, case: str) -> dict:
    want = reference(root, case)
    if case.startswith("zero1") and CASES[case][1]["frozen"]:
        extra = zero1_frozen_extra(root, case)
        assert extra, "the ZeRO-1 frozen case should have a frozen parameter"
        assert not set(extra) & set(want), "zero_to_fp32.py was expected to drop ZeRO-1 frozen parameters"
        want.update(extra)
    return want


@pytest.mark.parametrize("case", ZERO + TRAINER_FSDP + DCP)
def test_bin_equals_reference_tool(fixtures, run_ckptd, tmp_path, case):
    out = consolidate(run_ckptd, source_folder(fixtures, case), tmp_path, "bin", "--consolidate", "always")
    got = load_bin(out)
    assert_same_dict(got, expected(fixtures, case), f"{case}: ")
    mmapped = load_bin(out, mmap=True)
    assert set(mmapped) == set(got)
    if CASES[case][0] == "zero":
        # Tied parameters share one storage, as in zero_to_fp32.py's output.
        assert got[TIED[0]].untyped_storage().data_ptr() == got[TIED[1]].untyped_storage().data_ptr()


@pytest.mark.parametrize("case", ZERO + TRAINER_FSDP + DCP)
def test_safetensors_equals_reference_tool(fixtures, run_ckptd, tmp_path, case):
    out = consolidate(run_ckptd, source_folder(fixtures, case), tmp_path, "safetensors", "--consolidate", "always")
    got, meta = load_st_open(out)
    assert meta.get("format") == "pt"
    want = expected(fixtures, case)
    if CASES[case][0] == "zero":
        # transformers convention: one copy of a tied tensor, the alias named in the metadata.
        assert TIED[0] not in got and meta.get(TIED[0]) == TIED[1]
        want = {k: v for k, v in want.items() if k != TIED[0]}
    assert_same_dict(got, want, f"{case}: ")


def test_zero_frozen_parameters(fixtures, run_ckptd, tmp_path):
    """ZeRO-1: kept although zero_to_fp32.py drops them; ZeRO-2/3: equal to its output (training dtype)."""
    for case in ("zero1_fp32_frozen", "zero2_bf16_frozen", "zero3_fp32_frozen"):
        out = consolidate(run_ckptd, source_folder(fixtures, case), tmp_path / case, "bin")
        got = load_bin(out)
        assert "transformer.wpe.weight" in got, case
        if case.startswith("zero1"):
            assert "transformer.wpe.weight" not in reference(fixtures, case)
            assert_same_tensor(got["transformer.wpe.weight"], zero1_frozen_extra(fixtures, case)["transformer.wpe.weight"])


@pytest.mark.parametrize("case", ["zero2_bf16_frozen", "zero3_bf16", "trainer_fsdp2"])
def test_from_pretrained_logits(fixtures, run_ckptd, tmp_path, case):
    from transformers import GPT2LMHeadModel

    out = consolidate(run_ckptd, source_folder(fixtures, case), tmp_path, "safetensors", "--consolidate", "always")
    config = fixtures / case / "checkpoint-2" / "config.json"
    if config.exists():
        shutil.copy(config, tmp_path / "config.json")
    else:  # Trainer FSDP sharded checkpoints hold no config.json
        gpt2_config().save_pretrained(tmp_path)
    loaded = GPT2LMHeadModel.from_pretrained(str(tmp_path), torch_dtype=torch.float32).eval()
    live = GPT2LMHeadModel(gpt2_config()).eval()
    missing, unexpected = live.load_state_dict(reference(fixtures, case), strict=False)
    assert not unexpected and set(missing) <= {TIED[0]}
    live.tie_weights()
    ids = torch.randint(0, 251, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, live(input_ids=ids).logits)


def test_dtype_cast_bf16(fixtures, run_ckptd, tmp_path):
    out = consolidate(run_ckptd, source_folder(fixtures, "zero3_fp32_frozen"), tmp_path, "bin", "--dtype", "bf16")
    got = load_bin(out)
    want = expected(fixtures, "zero3_fp32_frozen")
    assert set(got) == set(want)
    for name, tensor in want.items():
        assert_same_tensor(got[name], tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor, name)


def test_auto_and_never(fixtures, run_ckptd, tmp_path):
    """auto: ZeRO-3 without gather16 has no weights -> consolidated in place; ZeRO-2 has model.safetensors ->
    ordinary conversion of that file; never: the ZeRO-3 folder is left alone. Rank files are never changed."""
    zero3 = tmp_path / "zero3"
    shutil.copytree(source_folder(fixtures, "zero3_bf16"), zero3)
    before = {p.name: p.stat().st_size for p in (zero3 / "global_step2").iterdir()}
    rc, out, err = run_ckptd("convert", str(zero3), "--to", "safetensors", "--consolidate", "never")
    assert rc == 0 and "no weight files" in out, (out, err)
    assert not (zero3 / "model.safetensors").exists()
    rc, out, err = run_ckptd("convert", str(zero3), "--to", "safetensors")
    assert rc == 0, err
    got, _ = load_st_open(zero3 / "model.safetensors")
    assert_same_tensor(got["transformer.h.0.attn.c_attn.weight"],
                       reference(fixtures, "zero3_bf16")["transformer.h.0.attn.c_attn.weight"])
    assert {p.name: p.stat().st_size for p in (zero3 / "global_step2").iterdir()} == before
    zero2 = tmp_path / "zero2"
    shutil.copytree(source_folder(fixtures, "zero2_bf16_frozen"), zero2)
    rc, out, err = run_ckptd("convert", str(zero2), "--to", "bin")
    assert rc == 0, err
    # The Trainer's bf16 model.safetensors was converted, not the fp32 master weights.
    assert load_bin(zero2 / "pytorch_model.bin")["transformer.wte.weight"].dtype == torch.bfloat16


# ---- hostile and incomplete input: one line naming the file, nothing written ----


def copy_case(fixtures, case, tmp_path) -> Path:
    dst = tmp_path / case
    shutil.copytree(source_folder(fixtures, case), dst)
    return dst


def refused(run_ckptd, folder, out, path):
    rc, stdout, err = run_ckptd("convert", str(folder), "--to", "safetensors", "--consolidate", "always",
                                "--out", str(out))
    line = assert_one_line_error(rc, err, path)
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    return line


def test_missing_rank_file(fixtures, run_ckptd, tmp_path):
    folder = copy_case(fixtures, "zero2_fp32", tmp_path)
    (folder / "global_step2" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    line = refused(run_ckptd, folder, tmp_path / "out", folder / "global_step2")
    assert "expected 2" in line


def test_truncated_rank_file(fixtures, run_ckptd, tmp_path):
    folder = copy_case(fixtures, "zero3_fp32_frozen", tmp_path)
    victim = folder / "global_step2" / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    refused(run_ckptd, folder, tmp_path / "out", victim)


def test_latest_names_missing_tag(fixtures, run_ckptd, tmp_path):
    folder = copy_case(fixtures, "zero2_fp32", tmp_path)
    (folder / "latest").write_text("global_step9")
    refused(run_ckptd, folder, tmp_path / "out", folder / "latest")


def test_partitions_do_not_add_up(fixtures, run_ckptd, tmp_path):
    folder = copy_case(fixtures, "zero2_fp32", tmp_path)
    victim = folder / "global_step2" / "mp_rank_00_model_states.pt"
    states = torch.load(victim, map_location="cpu", weights_only=False)
    group = states["param_shapes"][0]
    first = next(iter(group))
    group[first] = torch.Size([group[first][0] + 500, *group[first][1:]])
    torch.save(states, victim)
    line = refused(run_ckptd, folder, tmp_path / "out", victim)
    assert "param_shapes" in line


def rewrite_metadata(folder: Path, change):
    import pickle

    with open(folder / ".metadata", "rb") as f:
        meta = pickle.load(f)
    change(meta)
    with open(folder / ".metadata", "wb") as f:
        pickle.dump(meta, f)


def test_dcp_storage_outside_file(fixtures, run_ckptd, tmp_path):
    folder = copy_case(fixtures, "dcp_fsdp2_odd", tmp_path)

    def push(meta):
        for info in meta.storage_data.values():
            info.offset += 10**9

    rewrite_metadata(folder, push)
    line = refused(run_ckptd, folder, tmp_path / "out", folder / "__")
    assert "outside the file" in line


@pytest.mark.parametrize("how", ["gap", "overlap"])
def test_dcp_chunk_gap_or_overlap(fixtures, run_ckptd, tmp_path, how):
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata

    folder = copy_case(fixtures, "dcp_fsdp2_odd", tmp_path)

    def damage(meta):
        entry = meta.state_dict_metadata["emb.weight"]
        first = entry.chunks[0]
        rows = first.sizes[0] + (-1 if how == "gap" else 1)
        entry.chunks[0] = ChunkStorageMetadata(offsets=first.offsets, sizes=torch.Size([rows, *first.sizes[1:]]))

    rewrite_metadata(folder, damage)
    line = refused(run_ckptd, folder, tmp_path / "out", folder / ".metadata")
    assert how in line


def test_metadata_calling_something_else(fixtures, run_ckptd, tmp_path):
    from interop_helpers import literal_os_system_pickle

    folder = copy_case(fixtures, "dcp_fsdp2_odd", tmp_path)
    marker = tmp_path / "pwned"
    (folder / ".metadata").write_bytes(literal_os_system_pickle(marker))
    line = refused(run_ckptd, folder, tmp_path / "out", folder / ".metadata")
    assert "os.system" in line and not marker.exists()


# ---- inspect and verify ----


@pytest.mark.parametrize("case", ["zero1_fp32_frozen", "zero3_bf16", "trainer_fsdp2", "dcp_fsdp1_odd", "dcp_tp_split"])
def test_inspect_lists_consolidated_tensors(fixtures, run_ckptd, case):
    from interop_helpers import inspect_tensors

    folder = source_folder(fixtures, case)
    rc, out, err = run_ckptd("inspect", str(folder), "--json")
    assert rc == 0, err
    doc = json.loads(out)
    want = expected(fixtures, case)
    assert doc["worldSize"] == 2
    assert doc["kind"] == ("PyTorch Distributed Checkpoint" if "zero" not in case else
                           f"DeepSpeed ZeRO stage {CASES[case][1]['stage']}")
    listed = inspect_tensors(out)
    assert listed == {n: (t.dtype, list(t.shape)) for n, t in want.items()}
    tied = set(doc["aliases"])
    assert doc["parameterCount"] == sum(t.numel() for n, t in want.items() if n not in tied)
    rc, text, err = run_ckptd("inspect", str(folder))
    assert rc == 0 and "world size: 2" in text and all(name in text for name in want)


@pytest.mark.parametrize("case", ["zero2_fp32", "zero3_fp32_frozen", "trainer_fsdp1", "dcp_fsdp2_odd"])
def test_verify_distributed_against_outputs(fixtures, run_ckptd, tmp_path, case):
    folder = copy_case(fixtures, case, tmp_path)
    if CASES[case][0] == "zero" and (folder / "model.safetensors").exists():
        (folder / "model.safetensors").unlink()  # distributed-only: the folder stands for its consolidated model
    out = consolidate(run_ckptd, folder, tmp_path / "out", "safetensors")
    rc, stdout, err = run_ckptd("verify", str(folder), str(out))
    assert rc == 0 and stdout.startswith("same:"), (stdout, err)
    # A different model fails.
    other = "zero3_bf16" if case != "zero3_bf16" else "zero2_fp32"
    other_out = consolidate(run_ckptd, source_folder(fixtures, other), tmp_path / "other", "safetensors",
                            "--consolidate", "always")
    if CASES[case][0] != "dcp":
        rc, stdout, err = run_ckptd("verify", str(folder), str(other_out))
        assert rc == 1 and "differ" in err, (stdout, err)


@pytest.mark.parametrize("case", DCP)
def test_dcp_equals_live_model(fixtures, run_ckptd, tmp_path, case):
    """Plain DCP of FSDP1/FSDP2 modules and of DTensors split along later dimensions (tensor parallel style): the
    consolidated file equals the live model's gathered state dict."""
    out = consolidate(run_ckptd, source_folder(fixtures, case), tmp_path, "safetensors")
    got, _ = load_st_open(out)
    live = torch.load(fixtures / case / "live_state_dict.pt", map_location="cpu", weights_only=True)
    assert_same_dict(got, dict(live), f"{case}: ")
