"""Evaluate one cell (model x sampler x task x decoding settings x seed) through lm-eval and turn
its per-example samples plus the meter's per-request compute into tidy rows."""

from __future__ import annotations

import json
import logging
import math
import time
from unittest import mock
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boe_eval.decoding.diagnostics import decision_summary
from boe_eval.errors import ConfigError
from boe_eval.harness.lm_adapter import BoeLM, attach_compute
from boe_eval.harness.task_index import task_manager_for
from boe_eval.provenance import runtime_facts
from boe_eval.store import wilson_interval
from boe_eval.models.denoiser import Denoiser
from boe_eval.samplers.base import Sampler

log = logging.getLogger(__name__)


@dataclass
class CellSpec:
    """Everything that defines one evaluation run."""

    model_name: str
    model_path: str
    sampler: str
    sampler_params: dict[str, Any]
    task: str
    lm_eval_task: str
    primary_metric: str
    gen_length: int
    steps: int
    block_length: int
    temperature: float = 0.0
    seed: int = 1234
    limit: int | None = None
    batch_size: int = 16
    early_stop: bool = False
    record_trajectory: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    include_paths: list[str] = field(default_factory=list)
    confirm_run_unsafe_code: bool = True
    #: wrap prompts in the tokenizer's chat template (instruction models; the d1 protocol)
    apply_chat_template: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  #: e.g. sweep budget fields, kept in rows
    #: display name written to rows as `variant` (e.g. the sampler config `boe_no_gating`); not part of
    #: the identity, so relabelling never reruns a cell. None: the sampler's name
    label: str | None = None

    def identity(self) -> dict[str, Any]:
        """The settings that make two cells the same experiment (wall-clock settings excluded)."""
        return {
            "model": self.model_path,
            "sampler": self.sampler,
            "sampler_params": self.sampler_params,
            "task": self.lm_eval_task,
            "gen_length": self.gen_length,
            "steps": self.steps,
            "block_length": self.block_length,
            "temperature": self.temperature,
            "seed": self.seed,
            "limit": self.limit,
            "early_stop": self.early_stop,
            "dtype": self.dtype,
            **({"apply_chat_template": True} if self.apply_chat_template else {}),
            **{f"extra.{k}": v for k, v in self.extra.items()},
        }


#: model types (config.json, lower case) whose denoiser takes the diffusion time: MDLM (boe_eval.models.mdlm) and the
#: exact oracles, whose conditionals do not depend on it and which accept it (boe_eval.oracles.base)
TIME_CONDITIONED_MODEL_TYPES = frozenset({"mdlm", "sedd", "boe_oracle"})


def check_sampler_fits_model(sampler: Sampler, model_path: str) -> None:
    """Before loading: a sampler that needs a time-conditioned denoiser (the ReMDM sigma-schedules
    remdm_cap, remdm_rescale, remdm_loop) on a model that is not one (LLaDA, Dream, masked LMs) is refused
    in one line, instead of failing at its first step after the model has loaded."""
    from boe_eval.models.denoiser import FOUR_D_MASK_MODEL_TYPES
    from boe_eval.models.loading import read_config

    if getattr(sampler, "needs_4d_mask", False):
        model_type = str(read_config(model_path).get("model_type", "")).lower()
        if model_type not in FOUR_D_MASK_MODEL_TYPES:
            raise ConfigError(
                f"sampler={sampler.name} needs a denoiser that takes a 4-D attention mask (its shadow-block "
                f"verification) and model.path={model_path} is a {model_type or 'masked LM'!r} model, which does not: "
                f"models with one are {', '.join(sorted(FOUR_D_MASK_MODEL_TYPES))} (e.g. model=tiny_addition)"
            )
    if not sampler.needs_time_conditioning:
        return
    config = read_config(model_path)
    model_type = str(config.get("model_type", "")).lower()
    if model_type not in TIME_CONDITIONED_MODEL_TYPES and not config.get("boe_mdlm_style"):
        raise ConfigError(
            f"sampler={sampler.name} needs a time-conditioned (MDLM-style) denoiser and model.path={model_path} is "
            f"a {model_type or 'masked LM'!r} model, which is not: use sampler=remdm_llada (ReMDM for LLaDA-style "
            "models) or an MDLM checkpoint"
        )


def _flatten_params(params: dict[str, Any]) -> dict[str, Any]:
    return {f"sampler.{k}": (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in params.items()}


def _metric_value(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _record_provenance(storage: dict) -> None:
    storage.update(runtime_facts())


def _simple_evaluate(lm: BoeLM, spec: CellSpec):
    import lm_eval

    return lm_eval.simple_evaluate(
        model=lm,
        tasks=[spec.lm_eval_task],
        task_manager=task_manager_for(spec.lm_eval_task, tuple(spec.include_paths)),
        limit=spec.limit,
        log_samples=True,
        random_seed=spec.seed,
        numpy_random_seed=spec.seed,
        torch_random_seed=spec.seed,
        fewshot_random_seed=spec.seed,
        confirm_run_unsafe_code=spec.confirm_run_unsafe_code,
        apply_chat_template=spec.apply_chat_template,
        bootstrap_iters=0,
        verbosity="ERROR",
    )


def write_samples(samples: dict[str, list[dict]], path_prefix: Path) -> list[Path]:
    """lm-eval's logged samples (with their `compute`), one JSON line per sample, in
    `<path_prefix>_<task>.jsonl` (as lm-eval's own `save_results_samples` serialises them)."""
    from lm_eval.utils import handle_non_serializable

    path_prefix.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for task_name, task_samples in samples.items():
        path = path_prefix.parent / f"{path_prefix.name}_{task_name}.jsonl"
        with path.open("w") as fh:
            for sample in task_samples:
                fh.write(json.dumps(sample, default=handle_non_serializable, ensure_ascii=False) + "\n")
        written.append(path)
    return written


def evaluate_cell(
    spec: CellSpec, denoiser: Denoiser, sampler: Sampler, progress: bool = True, samples_prefix: Path | None = None
) -> list[dict]:
    """Run lm-eval for one cell; returns example rows followed by one summary row. With
    `samples_prefix`, lm-eval's logged samples, each with its `compute`, are written there too."""
    lm = BoeLM(
        denoiser=denoiser,
        sampler=sampler,
        gen_length=spec.gen_length,
        steps=spec.steps,
        block_length=spec.block_length,
        temperature=spec.temperature,
        batch_size=spec.batch_size,
        seed=spec.seed,
        early_stop=spec.early_stop,
        record_trajectory=spec.record_trajectory,
        progress=progress,
    )
    start = time.perf_counter()
    # lm-eval's add_env_info runs torch's collect_env (pip, conda, nvidia-smi subprocesses) on every
    # call: seconds to minutes per cell on a busy machine. Our rows record provenance themselves.
    with mock.patch("lm_eval.evaluator.add_env_info", _record_provenance):
        out = _simple_evaluate(lm, spec)
    elapsed = time.perf_counter() - start
    if out is None:  # non-zero rank under data parallel
        return []
    attach_compute(out["samples"], lm)
    if samples_prefix is not None:
        write_samples(out["samples"], samples_prefix)
    common = {
        "model": spec.model_name,
        "model_path": spec.model_path,
        **{k: v for k, v in denoiser.describe().items() if k != "model"},
        "sampler": sampler.name,
        "variant": spec.label or sampler.name,
        **_flatten_params(sampler.params()),
        "task": spec.task,
        "lm_eval_task": spec.lm_eval_task,
        "primary_metric": spec.primary_metric,
        "gen_length": spec.gen_length,
        "steps": spec.steps,
        "block_length": spec.block_length,
        "temperature": spec.temperature,
        "seed": spec.seed,
        "limit": spec.limit,
        "batch_size": spec.batch_size,
        "early_stop": spec.early_stop,
        "apply_chat_template": spec.apply_chat_template,
        **spec.extra,
        **runtime_facts(),
    }
    rows: list[dict] = []
    metric_names: list[str] = []
    for task_name, samples in out["samples"].items():
        for sample in samples:
            record = lm.records.get((task_name, sample["doc_id"]), {})
            metrics = {name: _metric_value(sample.get(name)) for name in sample.get("metrics", [])}
            for name in metrics:
                if name not in metric_names:
                    metric_names.append(name)
            if spec.primary_metric not in metrics:
                raise ConfigError(
                    f"primary_metric={spec.primary_metric!r} is not reported by task {task_name!r}: "
                    f"it reports {', '.join(metrics)}"
                )
            trajectory = record.pop("trajectory", None) if record else None
            rows.append(
                {
                    "row_type": "example",
                    **common,
                    "lm_eval_subtask": task_name,
                    "doc_id": sample["doc_id"],
                    "score": metrics[spec.primary_metric],
                    **{f"metric.{k}": v for k, v in metrics.items()},
                    "target": str(sample.get("target")),
                    "response": str(sample["filtered_resps"][0]) if sample.get("filtered_resps") else None,
                    **{k: v for k, v in record.items() if k not in {"generation"}},
                    **({"trajectory": trajectory} if trajectory is not None else {}),
                }
            )
    rows.sort(key=lambda r: (r["lm_eval_subtask"], r["doc_id"]))
    summary = summarize(rows, common, metric_names, elapsed)
    for name, value in corpus_metrics(out.get("results", {}), metric_names).items():
        if summary.get(f"metric.{name}") is None:  # a corpus-level metric (MAUVE, GenPPL): lm-eval's aggregate
            summary[f"metric.{name}"] = value
    rows.append(summary)
    return rows


def corpus_metrics(results: dict, metric_names: list[str]) -> dict[str, float]:
    """lm-eval's aggregated value of each metric (`<name>,none`), for metrics whose per-example values are not
    numbers but inputs of a corpus-level aggregation (docs/protocols.md "Unconditional generation")."""
    out: dict[str, float] = {}
    for task_results in results.values():
        for name in metric_names:
            value = _metric_value(task_results.get(f"{name},none"))
            if value is not None:
                out.setdefault(name, value)
    return out


def summarize(rows: list[dict], common: dict, metric_names: list[str], elapsed: float) -> dict:
    """The run's summary row: mean of every metric (with a 95% Wilson interval on the primary
    score when it is a proportion) and mean / total compute."""
    n = len(rows)
    scores = [r["score"] for r in rows if r["score"] is not None]
    mean = sum(scores) / len(scores) if scores else float("nan")
    binary = all(s in (0.0, 1.0) for s in scores)
    low, high = wilson_interval(sum(scores), len(scores)) if binary and scores else (float("nan"), float("nan"))

    def avg(key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    summary = {
        "row_type": "summary",
        **common,
        "n_examples": n,
        "score": mean,
        "score_ci_low": low,
        "score_ci_high": high,
        **{f"metric.{m}": avg(f"metric.{m}") for m in metric_names},
        "nfe": avg("nfe"),
        "nfe_to_stop": avg("nfe_to_stop"),
        "forwards": avg("forwards"),
        "backwards": avg("backwards"),
        "forward_equivalents": avg("forward_equivalents"),
        "tokens_processed": avg("tokens_processed"),
        "forward_flops": avg("forward_flops"),
        "flops": avg("flops"),
        "fallbacks": sum(r.get("fallbacks") or 0 for r in rows),
        "wall_time_s": elapsed,
        "decode_time_s": sum(r.get("wall_time_s") or 0.0 for r in rows),
        **decision_summary(rows),  # agreement with confidence, writes undone (issue 14)
    }
    return summary


__all__ = ["CellSpec", "corpus_metrics", "evaluate_cell", "summarize", "write_samples"]
