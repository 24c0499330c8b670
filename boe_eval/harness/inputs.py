"""The checks of a job's inputs that read files or ask the machine, each ending in one `ConfigError`
line before any model loads: the model directory (config, weights, tokenizer), the lm-eval task's
YAML and data, and (where the job runs) the device."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

from boe_eval.errors import ConfigError


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__


def check_device_available(device: str) -> None:
    """`model.device` names a device this machine has (never a silent fallback to another one).
    Called where the job runs, before the model loads (not in the preflight of a cluster grid)."""
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if count == 0:
            raise ConfigError(f"model.device={device!r} is invalid: this machine has no CUDA GPU usable by torch "
                              f"{torch.__version__} (torch.cuda.is_available() is False): use model.device=cpu")
        if index >= count:
            raise ConfigError(f"model.device={device!r} is invalid: this machine has {count} CUDA GPU(s), "
                              f"cuda:0 to cuda:{count - 1}")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("model.device='mps' is invalid: Apple's MPS backend is not available on this machine: "
                          "use model.device=cpu")


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
#: files a Hugging Face tokenizer is built from (fast: tokenizer.json; slow: its vocabulary files);
#: without any of them transformers tries to convert a slow tokenizer and fails with unrelated errors
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model", "vocab.model")


def check_model_dir(path: str) -> None:
    """A missing or corrupt model directory fails here, before any weights are read: config.json
    must parse, and safetensors weights (single or sharded) must exist with readable headers."""
    from safetensors import safe_open

    from boe_eval.models.loading import read_config, resolve_model_path

    read_config(path)
    folder = resolve_model_path(path)
    index = folder / "model.safetensors.index.json"
    shards: list[Path] = []
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConfigError(f"{index} is corrupt: {_first_line(err)}; re-download the model") from None
        shards = [folder / name for name in sorted(set(weight_map.values()))]
        for shard in shards:
            if not shard.is_file():
                raise ConfigError(f"model path {str(folder)!r} lacks the weight shard {shard.name!r} named in {index.name}")
    elif (folder / "model.safetensors").is_file():
        shards = [folder / "model.safetensors"]
    elif not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        raise ConfigError(f"model path {str(folder)!r} has no weights ({', '.join(WEIGHT_SUFFIXES)} files): "
                          "not a complete model directory")
    for shard in shards:
        try:
            with safe_open(str(shard), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # safetensors raises its own error types for a bad header
            raise ConfigError(f"weights file {str(shard)!r} is corrupt ({_first_line(err)}): re-download the model") from None
    if not any((folder / name).is_file() for name in TOKENIZER_FILES) and not any(folder.glob("*.tiktoken")):
        raise ConfigError(f"model path {str(folder)!r} has no tokenizer file (one of {', '.join(TOKENIZER_FILES)}): "
                          "copy the model's tokenizer.json (or its vocabulary files) into it")


@functools.lru_cache(maxsize=32)
def check_task_data(name: str, include_paths: tuple[str, ...] = (), primary_metric: str | None = None) -> None:
    """Build the lm-eval task, which reads its data: a missing or unreadable data file fails here,
    before the model loads; so does a `primary_metric` that the task does not report."""
    from boe_eval.harness.task_index import task_manager_for

    try:
        loaded = task_manager_for(name, include_paths).load([name])
    except ConfigError:
        raise
    except Exception as err:  # datasets / lm-eval raise many types for missing or unreadable data
        raise ConfigError(f"task {name!r} could not load its data: {_first_line(err)}") from None
    if primary_metric is None:
        return
    for task_name, task in loaded.get("tasks", {}).items():
        reported = list(task.aggregation())
        if primary_metric not in reported:
            raise ConfigError(f"task.primary_metric={primary_metric!r} is not reported by task {task_name!r}: "
                              f"it reports {', '.join(reported)}")


def check_task_yaml(name: str, include_paths: Sequence[str] = ()) -> None:
    """When lm-eval does not know task `name`, say so precisely if a task YAML that defines it (its
    file is named after it or it mentions the name) cannot be read: lm-eval skips unreadable YAMLs
    silently, so a syntax error would otherwise look like an unknown task."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from boe_eval.harness.task_index import TASKS_DIR

    word = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
    for root in (TASKS_DIR, *include_paths):
        for path in sorted(Path(root).rglob("*.y*ml")):
            if path.suffix not in (".yaml", ".yml"):
                continue
            try:
                mentions = path.stem == name or bool(word.search(path.read_text(errors="replace")))
            except OSError:
                continue
            if not mentions:
                continue
            try:
                load_yaml(path, resolve_func=False)
            except Exception as err:  # yaml.YAMLError, ValueError (not a mapping, include cycle), OSError
                where = getattr(getattr(err, "problem_mark", None), "line", None)
                at = f" (line {where + 1})" if where is not None else ""
                problem = getattr(err, "problem", None) or _first_line(err)
                raise ConfigError(f"task {name!r} cannot be loaded: its YAML {str(path)!r} is malformed{at}: {problem}") from None
