"""Facts about the software and machine recorded in every result row (issue 8: reproducibility)."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


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


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    return {
        "boe_eval_version": _version("boe-eval"),
        "torch_version": torch.__version__,
        "transformers_version": _version("transformers"),
        "lm_eval_version": _version("lm-eval"),
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "host_cpu": platform.machine(),
    }


def runtime_facts() -> dict:
    """Facts that may change within a process (thread count)."""
    return {"torch_threads": torch.get_num_threads(), **provenance()}
