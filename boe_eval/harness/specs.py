"""From the typed job (`schema.JobSpec`) to the cells it asks for (`CellSpec`): the inputs a job reads
checked once before any model loads (`check_inputs`), each cell's spec derived from the job
(`cell_spec`), and from a cell spec its store key (`CellSpec.identity`) and the columns of its rows
(`CellSpec.columns`). docs/design.md "Run spec"."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from boe_eval.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from boe_eval.harness.schema import JobSpec
    from boe_eval.samplers.base import Sampler


@dataclass
class CellSpec:
    """Everything that defines one evaluation run (model x sampler x task x decoding settings x seed)."""

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
    #: Fast-dLLM KV cache (`boe_eval.models.kv_cache`): none, prefix or dual
    cache: str = "none"
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
        """The settings that make two cells the same experiment (wall-clock settings excluded); the
        store key is its hash (`boe_eval.store.cell_id`)."""
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
            **({"cache": self.cache} if self.cache != "none" else {}),  # (cache=none keeps the identity it had)
            **({"apply_chat_template": True} if self.apply_chat_template else {}),
            **{f"extra.{k}": v for k, v in self.extra.items()},
        }

    def columns(self) -> dict[str, Any]:
        """The columns every row of the cell carries that the spec defines (the rest are measured:
        metrics, compute, the model's description, provenance), in the order rows list them."""
        return {
            "model": self.model_name,
            "model_path": self.model_path,
            "sampler": self.sampler,
            "variant": self.label or self.sampler,
            **{f"sampler.{k}": (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
               for k, v in self.sampler_params.items()},
            "task": self.task,
            "lm_eval_task": self.lm_eval_task,
            "primary_metric": self.primary_metric,
            "gen_length": self.gen_length,
            "steps": self.steps,
            "block_length": self.block_length,
            "temperature": self.temperature,
            "seed": self.seed,
            "limit": self.limit,
            "batch_size": self.batch_size,
            "early_stop": self.early_stop,
            "cache": self.cache,
            "apply_chat_template": self.apply_chat_template,
            **self.extra,
        }

    def planned_columns(self) -> dict[str, Any]:
        """`columns()` plus the dtype the loaded model will report (`Denoiser.describe`): what a
        results folder is checked against before the model loads (`analysis.load.planned_summary`)."""
        return {**self.columns(), "dtype": self.dtype}


#: model types (config.json, lower case) whose denoiser takes the diffusion time: MDLM (boe_eval.models.mdlm) and the
#: exact oracles, whose conditionals do not depend on it and which accept it (boe_eval.oracles.base), and SEDD
#: (boe_eval.models.sedd, whose score takes the noise level sigma)
TIME_CONDITIONED_MODEL_TYPES = frozenset({"mdlm", "boe_oracle", "sedd"})


def _check_efficient_aqa_fits(sampler: Sampler, model_path: str) -> None:
    """BoE's efficient ActiveQueryAttention (boe_eval/models/aqa.py) replaces the SDPA kernel call; a BERT with
    relative position encodings computes attention itself, so that mode cannot run there (the faithful mode,
    eq. 30 as written, gives the same gradients)."""
    from boe_eval.models.denoiser import relative_position_encoding
    from boe_eval.models.loading import read_config

    settings = getattr(sampler, "config", None)
    if not (getattr(settings, "aqa", False) and getattr(settings, "aqa_mode", None) == "efficient"):
        return
    if getattr(settings, "signal", None) == "random":  # the random control makes no backward
        return
    positions = relative_position_encoding(read_config(model_path))
    if positions is not None:
        raise ConfigError(
            f"sampler={sampler.name} with aqa_mode=efficient needs attention through torch's SDPA kernel and "
            f"model.path={model_path} is a BERT with {positions!r} position encodings, which computes attention "
            "itself: add sampler.params.aqa_mode=faithful (the same gradients, eq. 30 as written)"
        )


def check_sampler_fits_model(sampler: Sampler, model_path: str) -> None:
    """Before loading: a sampler that needs a time-conditioned denoiser (the ReMDM sigma-schedules
    remdm_cap, remdm_rescale, remdm_loop) on a model that is not one (LLaDA, Dream, masked LMs) is refused
    in one line, instead of failing at its first step after the model has loaded."""
    from boe_eval.models.denoiser import FOUR_D_MASK_MODEL_TYPES, relative_position_encoding
    from boe_eval.models.loading import read_config

    if getattr(sampler, "needs_4d_mask", False):
        config = read_config(model_path)
        model_type = str(config.get("model_type", "")).lower()
        if relative_position_encoding(config) is not None:  # ignores position ids
            model_type = f"{model_type} (relative positions)"
        if model_type not in FOUR_D_MASK_MODEL_TYPES:
            raise ConfigError(
                f"sampler={sampler.name} needs a denoiser that takes a 4-D attention mask (its shadow-block "
                f"verification) and model.path={model_path} is a {model_type or 'masked LM'!r} model, which does not: "
                f"models with one are {', '.join(sorted(FOUR_D_MASK_MODEL_TYPES))} (e.g. model=tiny_addition)"
            )
    _check_efficient_aqa_fits(sampler, model_path)
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


def check_cache_fits(sampler: Sampler, cache: str, model_path: str) -> None:
    """Before loading: a KV cache serves no-grad forwards of token ids only, so a sampler whose prediction is a
    forward with gradients (BoE's surrogate) or a 4-D-mask forward (WINO) is refused with cache=prefix|dual, and so
    is a model whose denoiser cannot place a part of the canvas at its positions (docs/design.md "KV caches")."""
    from boe_eval.models.kv_cache import KV_CACHE_MODEL_TYPES, cache_refusal
    from boe_eval.models.loading import read_config

    reason = cache_refusal(sampler, cache)
    if reason:
        raise ConfigError(reason)
    if cache != "none":
        model_type = str(read_config(model_path).get("model_type", "")).lower()
        if model_type not in KV_CACHE_MODEL_TYPES:
            raise ConfigError(f"cache={cache} needs a model whose forward of a part of the canvas can be placed at its "
                              f"positions and model.path={model_path} is a {model_type or 'masked LM'!r} model: models "
                              f"with one are {', '.join(sorted(KV_CACHE_MODEL_TYPES))} (e.g. model=tiny_addition)")


def as_job(job: JobSpec | DictConfig) -> JobSpec:
    """The typed spec of a job: a composed config is validated (`schema.validate_job`), a `JobSpec`
    is taken as it is (it was validated when it was made)."""
    from boe_eval.harness.schema import JobSpec, validate_job

    return job if isinstance(job, JobSpec) else validate_job(job)


def check_inputs(job: JobSpec) -> None:
    """The checks that read files, once per job, before any model loads: the model directory, the
    model/task pairing of built-in models, the lm-eval task, its data and its primary metric."""
    from boe_eval.harness.inputs import check_model_dir, check_task_data, check_task_yaml
    from boe_eval.harness.task_index import check_task

    model_path, task = job.model.path, job.task
    check_model_dir(model_path)  # missing or corrupt model directory: one-line error before loading
    made_for = job.model.task
    if made_for and model_path.startswith(("builtin:", "oracle:")) and task.name != made_for:
        raise ConfigError(
            f"task={task.name} does not fit model.path={model_path}: that model was made for task={made_for} "
            f"(another task's prompts are outside its vocabulary): add task={made_for}, or choose another model"
        )
    include = tuple(task.include_paths)
    try:
        check_task(task.lm_eval_task, include)
    except ConfigError:
        check_task_yaml(task.lm_eval_task, include)  # a malformed task YAML, not an unknown task
        raise
    # missing data files, unreported primary metric: one-line error before loading the model
    check_task_data(task.lm_eval_task, include, task.primary_metric)


def cell_spec(job: JobSpec, sampler: str, params: dict[str, Any] | None = None, *, steps: int | None = None,
              seed: int | None = None, label: str | None = None,
              extra: dict[str, Any] | None = None) -> tuple[CellSpec, Sampler]:
    """One cell of `job`: sampler `sampler` with `params` (checked against its config dataclass), at
    `steps` and `seed` when given (a sweep's cells; the caller keeps the layout valid), else the job's."""
    from boe_eval.harness.schema import check_sampler_params
    from boe_eval.models.loading import check_model_fits_run
    from boe_eval.samplers.base import build_sampler

    params = dict(params or {})
    check_sampler_params(sampler, params)
    built = build_sampler(sampler, **params)
    check_sampler_fits_model(built, job.model.path)  # e.g. ReMDM sigma-schedules on LLaDA: before loading
    check_cache_fits(built, job.cache, job.model.path)
    gen_length, job_steps, block_length = job.layout
    check_model_fits_run(job.model.path, sampler, gen_length, block_length)  # e.g. DiffusionGemma's canvas
    spec = CellSpec(
        model_name=job.model.label(),
        model_path=job.model.path,
        sampler=sampler,
        sampler_params=built.params(),
        task=job.task.name,
        lm_eval_task=job.task.lm_eval_task,
        primary_metric=job.task.primary_metric,
        gen_length=gen_length,
        steps=job_steps if steps is None else int(steps),
        block_length=block_length,
        temperature=job.temperature,
        seed=job.seed if seed is None else int(seed),
        limit=job.limit,
        batch_size=job.batch_size,
        early_stop=job.early_stop,
        record_trajectory=job.record_trajectory,
        dtype=job.model.dtype,
        device=job.model.device,
        include_paths=list(job.task.include_paths),
        confirm_run_unsafe_code=job.confirm_run_unsafe_code,
        apply_chat_template=job.model.chat_template,
        cache=job.cache,
        label=label if job.cache == "none" else f"{label or sampler}+{job.cache}",
        extra=dict(extra or {}),
    )
    return spec, built


def build_specs(job: JobSpec | DictConfig) -> list[tuple[CellSpec, Sampler]]:
    """The cells of a (non-sweep) job, [(CellSpec, Sampler)], every input checked, no model loaded:
    one cell for a one-sampler job, one per member of a comparison config."""
    job = as_job(job)
    check_inputs(job)
    if job.sampler.members:
        return [cell_spec(job, name) for name in job.sampler.members]
    return [cell_spec(job, job.sampler.name, job.sampler.params, label=job.sampler_label or job.sampler.name)]


def model_label(job: JobSpec | DictConfig, model_path: str | None = None) -> str:
    """The model's name in rows and tables (`schema.ModelSchema.label`)."""
    model = as_job(job).model
    return (dataclasses.replace(model, path=model_path) if model_path else model).label()


def sampler_label(name: str) -> str:
    """How a one-sampler job is named in rows (`schema.sampler_label`)."""
    from boe_eval.harness.schema import sampler_label as label

    return label(name)


__all__ = ["CellSpec", "as_job", "build_specs", "cell_spec", "check_inputs", "check_sampler_fits_model",
           "model_label", "sampler_label"]
