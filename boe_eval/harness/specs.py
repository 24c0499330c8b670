"""From a composed Hydra config to the run specs it asks for: every value validated once, before any
model loads (`build_specs`), and the names a run is reported under."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from boe_eval.errors import ConfigError


def _positive_int_or_none(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}={value!r} is invalid: it must be a positive integer (or null for all)")
    return value


def _required(cfg: DictConfig, key: str, group: str) -> Any:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        raise ConfigError(f"{key} is missing: the {group} config must set it")
    return value


def build_specs(cfg: DictConfig) -> list[tuple[Any, Any]]:
    """Validate the composed config and return [(CellSpec, Sampler)] without loading any model."""
    from boe_eval.decoding.loop import DecodeConfig
    from boe_eval.harness.evaluate import CellSpec, check_sampler_fits_model
    from boe_eval.models.loading import check_model_fits_run
    from boe_eval.harness.task_index import check_task
    from boe_eval.harness.schema import check_model_dir, check_task_data, check_task_yaml, validate_job
    from boe_eval.samplers.base import build_sampler

    validate_job(cfg)  # types and ranges of every field (issue 8 schema)
    limit = _positive_int_or_none("limit", cfg.limit)
    batch_size = _positive_int_or_none("batch_size", cfg.batch_size)
    if batch_size is None:
        raise ConfigError("batch_size=null is invalid: it must be a positive integer")
    gen_length, steps = cfg.gen_length, cfg.steps
    block_length = cfg.block_length if cfg.block_length is not None else gen_length
    DecodeConfig(gen_length=gen_length, steps=steps, block_length=block_length, temperature=cfg.temperature).validate()
    model_path = str(_required(cfg, "model.path", "model"))
    check_model_dir(model_path)  # missing or corrupt model directory: one-line error before loading
    task_name = str(_required(cfg, "task.name", "task"))
    made_for = cfg.model.get("task")
    if made_for and model_path.startswith(("builtin:", "oracle:")) and task_name != made_for:
        raise ConfigError(
            f"task={task_name} does not fit model.path={model_path}: that model was made for task={made_for} "
            f"(another task's prompts are outside its vocabulary): add task={made_for}, or choose another model"
        )
    lm_task = str(_required(cfg, "task.lm_eval_task", "task"))
    include = tuple(str(p) for p in (OmegaConf.select(cfg, "task.include_paths", default=None) or []))
    try:
        check_task(lm_task, include)
    except ConfigError:
        check_task_yaml(lm_task, include)  # a malformed task YAML, not an unknown task
        raise
    # missing data files, unreported primary metric: one-line error before loading the model
    check_task_data(lm_task, include, str(_required(cfg, "task.primary_metric", "task")))
    members = OmegaConf.select(cfg, "sampler.members", default=None)
    raw_params = OmegaConf.select(cfg, "sampler.params", default=None)
    params = OmegaConf.to_container(raw_params, resolve=True) if raw_params is not None else {}
    if members and params:
        raise ConfigError(
            f"sampler.params={params} cannot be used with the comparison config {cfg.sampler.get('name')!r}: "
            "choose one sampler (e.g. sampler=confidence) to set its parameters"
        )
    entries = [(str(m), {}) for m in members] if members else [(str(_required(cfg, "sampler.name", "sampler")), params)]
    specs = []
    label = None if members else sampler_label(str(entries[0][0]))
    for name, sampler_params in entries:
        sampler = build_sampler(name, **sampler_params)
        check_sampler_fits_model(sampler, model_path)  # e.g. ReMDM sigma-schedules on LLaDA: before loading
        check_model_fits_run(model_path, name, int(gen_length), int(block_length))  # e.g. DiffusionGemma's canvas
        spec = CellSpec(
            model_name=model_label(cfg, model_path),
            model_path=model_path,
            sampler=name,
            sampler_params=sampler.params(),
            task=task_name,
            lm_eval_task=lm_task,
            primary_metric=str(_required(cfg, "task.primary_metric", "task")),
            gen_length=int(gen_length),
            steps=int(steps),
            block_length=int(block_length),
            temperature=float(cfg.temperature),
            seed=int(cfg.seed),
            limit=limit,
            batch_size=batch_size,
            early_stop=bool(cfg.early_stop),
            record_trajectory=bool(cfg.record_trajectory),
            dtype=str(cfg.model.get("dtype", "float32")),
            device=str(cfg.model.get("device", "cpu")),
            include_paths=list(include),
            confirm_run_unsafe_code=bool(cfg.get("confirm_run_unsafe_code", True)),
            apply_chat_template=bool(cfg.model.get("chat_template", False)),
            label=label,
        )
        specs.append((spec, sampler))
    return specs


def model_label(cfg: DictConfig, model_path: str) -> str:
    """The model's name in rows and tables: the model config's `name`, except when that names a
    built-in model while `model.path` points elsewhere (`model.path=/tmp/random_bert` on top of the
    default config must not be reported as the built-in model): then the directory's name."""
    from boe_eval.models.loading import BUILTIN_DIR

    name = cfg.model.get("name")
    if name and (BUILTIN_DIR / str(name)).is_dir() and model_path != f"builtin:{name}":
        if Path(model_path).resolve() != (BUILTIN_DIR / str(name)).resolve():
            name = Path(model_path).name or model_path
    return str(name or model_path)


def sampler_label(name: str) -> str:
    """How a one-sampler job is named in tables and plots: the Hydra sampler config chosen (e.g.
    `boe_no_gating`, which is `boe` with one switch changed) followed by any `sampler.params.*`
    overrides of the command line, so the runs of `-m sampler=boe,boe_no_gating` or of a swept
    parameter stay apart. Outside a Hydra run (tests, scripts): the sampler's name."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return name
    hydra_cfg = HydraConfig.get()
    label = str(hydra_cfg.runtime.choices.get("sampler") or name)
    prefix = "sampler.params."
    overrides = [o.lstrip("+~") for o in hydra_cfg.overrides.task if o.lstrip("+~").startswith(prefix)]
    if overrides:
        label += " (" + ", ".join(sorted(o[len(prefix):] for o in overrides)) + ")"
    return label


__all__ = ["build_specs", "model_label", "sampler_label"]
