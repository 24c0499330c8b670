"""Facts about the software and machine recorded in every result row (issue 8: reproducibility)."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """Commit of the boe-eval checkout (suffixed `+dirty` when the tree has changes)."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def accelerator_name() -> str:
    """The GPU model (kernels differ between GPU types and change greedy results, docs/references.md §11.6), or `cpu`."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.cuda.current_device())
    return "cpu"


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    """Software and hardware of this process (dtype and device of the model are added to rows by
    `Denoiser.describe()`)."""
    import torch

    return {
        "boe_eval_version": _version("boe-eval"),
        "torch_version": torch.__version__,
        "transformers_version": _version("transformers"),
        "lm_eval_version": _version("lm-eval"),
        "accelerate_version": _version("accelerate"),
        "cuda_version": torch.version.cuda or "none",
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "host_cpu": platform.machine(),
        "accelerator": accelerator_name(),
    }


def runtime_facts() -> dict:
    """Facts that may change within a process (thread count, deterministic-algorithms flag)."""
    import torch

    return {
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        **provenance(),
    }
