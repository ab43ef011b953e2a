"""Shared fixtures for the ckptd interop suite (real torch / safetensors / transformers, never faked).

The binary under test comes from the environment variable CKPTD (default: <repo>/.build/debug/ckptd).
Everything runs offline on tiny models built from configs, inside pytest's tmp_path.
"""

import os
import subprocess
from pathlib import Path

# Offline before anything imports transformers / huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True, warn_only=True)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO / ".build" / "debug" / "ckptd"
RUN_TIMEOUT = 180


def binary_path() -> Path:
    """The ckptd executable under test (env CKPTD, default <repo>/.build/debug/ckptd)."""
    return Path(os.environ.get("CKPTD") or DEFAULT_BINARY).resolve()


@pytest.fixture(scope="session")
def ckptd_bin() -> Path:
    """Path of the ckptd binary; fails (does not skip) when it is missing, so `make interop` cannot pass vacuously."""
    path = binary_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"ckptd binary not found or not executable: {path} (build it or set CKPTD)")
    return path


def _run(binary: Path, args, cwd=None, env=None, preexec_fn=None, timeout=RUN_TIMEOUT):
    full_env = dict(os.environ)
    full_env.pop("NOTIFY_SOCKET", None)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [str(binary), *[str(a) for a in args]],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        preexec_fn=preexec_fn,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def run_ckptd(ckptd_bin):
    """`run_ckptd(*args, cwd=None, env=None, preexec_fn=None)` -> (returncode, stdout, stderr)."""

    def run(*args, cwd=None, env=None, preexec_fn=None, timeout=RUN_TIMEOUT):
        return _run(ckptd_bin, args, cwd=cwd, env=env, preexec_fn=preexec_fn, timeout=timeout)

    return run
