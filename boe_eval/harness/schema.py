"""The typed run spec of a `boe-eval` job, and how bad input becomes one clear line (issue 8).

`JobSpec` is a tree of dataclasses (job -> model / sampler / task groups). `validate_job` turns the
composed Hydra config into it once, right after composition: OmegaConf's structured configs
type-check every value, then each dataclass checks its ranges. From there on the harness passes the
`JobSpec` (never the raw DictConfig) to `specs.build_specs`, the sweep planner and the runner; the
cells it plans (`specs.CellSpec`) define the store key and the row columns. Every failure is a
`ConfigError` whose single line names the field, the bad value and what is allowed (docs/design.md
"Run spec"). The checks that read files live in `inputs` (re-exported here).

`preflight` composes every job of a command line (each cell of a `-m` grid) and validates it before
Hydra starts any job or launcher, so a bad cell stops the whole grid before a model is loaded and
before a row is written; Hydra's own composition errors (unknown group option, misspelt key,
unparsable override) are translated into the same one-line form.

The schema validates the composed config rather than being Hydra's composition schema, so the
config groups can gain keys (sweeps, launchers) without every key first being declared here.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from boe_eval.errors import ConfigError
from boe_eval.harness.inputs import (  # noqa: F401  (re-exported: the checks were defined here)
    check_device_available,
    check_model_dir,
    check_task_data,
    check_task_yaml,
)


def _allowed(default: Any = MISSING, allowed: str = "", **kwargs: Any) -> Any:
    """A schema field; `allowed` says in words which values are valid (used in error lines)."""
    if "default_factory" in kwargs:
        return field(metadata={"allowed": allowed}, **kwargs)
    return field(default=default, metadata={"allowed": allowed})


DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
MAX_INT = 2**63 - 1  #: the largest count Python's slicing and numpy accept (sys.maxsize on 64-bit)


@dataclass
class ModelSchema:
    path: str = _allowed(allowed="a local model directory (or builtin:<name>)")
    name: str | None = _allowed(None, "a string")
    dtype: str = _allowed("float32", "one of float32, float16, bfloat16")
    device: str = _allowed("cpu", "cpu, cuda, cuda:<index> or mps")
    chat_template: bool = _allowed(False, "true or false (wrap prompts in the tokenizer's chat template)")
    task: str | None = _allowed(None, "the task a built-in model or oracle was made for (or null)")

    def label(self) -> str:
        """The model's name in rows and tables: `name`, except when that names a built-in model while
        `path` points elsewhere (`model.path=/tmp/random_bert` on top of the default config must not be
        reported as the built-in model): then the directory's name."""
        from boe_eval.models.loading import BUILTIN_DIR

        name = self.name
        if name and (BUILTIN_DIR / name).is_dir() and self.path != f"builtin:{name}":
            if Path(self.path).resolve() != (BUILTIN_DIR / name).resolve():
                name = Path(self.path).name or self.path
        return str(name or self.path)

    def check(self) -> None:
        from boe_eval.models.loading import DTYPES

        if not self.path.strip():
            raise ConfigError("model.path='' is invalid: it must be a local model directory (or builtin:<name>)")
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype={self.dtype!r} is invalid: it must be one of {', '.join(DTYPES)}")
        if not DEVICE_PATTERN.match(self.device):
            raise ConfigError(f"model.device={self.device!r} is invalid: it must be cpu, cuda, cuda:<index> or mps")
        # (whether this machine has the device is checked where the job runs, `check_device_available`:
        # a cluster grid is validated on a login node without GPUs)


@dataclass
class SamplerSchema:
    name: str = _allowed(allowed="a registered sampler name")
    params: dict[str, Any] = _allowed(allowed="a mapping of the sampler's parameters", default_factory=dict)
    members: list[str] | None = _allowed(None, "a list of registered sampler names")

    def check(self) -> None:
        import boe_eval.samplers  # noqa: F401  (registers every sampler module)
        from boe_eval.samplers.base import SAMPLERS

        known = ", ".join(sorted(SAMPLERS))
        if self.members and self.params:
            raise ConfigError(
                f"sampler.params={self.params} is invalid with the comparison config {self.name!r}: "
                "choose one sampler (e.g. sampler=confidence) to set its parameters"
            )
        for i, member in enumerate(self.members or []):
            if member not in SAMPLERS:
                raise ConfigError(f"sampler.members[{i}]={member!r} is unknown: choose from {known}")
        if not self.members:
            if self.name not in SAMPLERS:
                raise ConfigError(f"sampler={_shorten(self.name)!r} is unknown: choose one of {known}")
            check_sampler_params(self.name, self.params, prefix="sampler.params")


@dataclass
class TaskSchema:
    name: str = _allowed(allowed="a string")
    lm_eval_task: str = _allowed(allowed="an lm-eval task name")
    primary_metric: str = _allowed(allowed="a metric the task reports")
    gen_length: int | None = _allowed(None, "a positive integer")
    steps: int | None = _allowed(None, "a positive integer")
    block_length: int | None = _allowed(None, "a positive integer dividing gen_length (or null)")
    include_paths: list[str] = _allowed(allowed="a list of folders with lm-eval task YAMLs", default_factory=list)
    limit: int | None = _allowed(None, "a positive integer: the task's default number of examples (or null)")
    temperature: float | None = _allowed(None, "a number >= 0: the task's default sampling temperature (or null)")


@dataclass
class JobSpec:
    """A whole `boe-eval` job, typed and validated (`validate_job`). Its decoding settings are checked
    here once; the cells of the job (`specs.build_specs`, the sweep planner) are derived from it."""

    model: ModelSchema = field(default_factory=ModelSchema)
    sampler: SamplerSchema = field(default_factory=SamplerSchema)
    task: TaskSchema = field(default_factory=TaskSchema)
    limit: int | None = _allowed(None, "a positive integer (or null for all examples)")
    gen_length: int = _allowed(allowed="a positive integer")
    steps: int = _allowed(allowed="a positive integer, at most gen_length, a multiple of the number of blocks")
    block_length: int | None = _allowed(None, "a positive integer dividing gen_length (or null = gen_length)")
    temperature: float = _allowed(0.0, "a number >= 0 (0 = greedy)")
    batch_size: int = _allowed(16, "a positive integer")
    seed: int = _allowed(1234, "an integer in [0, 2**32 - 1] (numpy's seed range)")
    early_stop: bool = _allowed(False, "true or false")
    #: Fast-dLLM's block-wise KV cache (docs/design.md "KV caches"): none, prefix or dual
    cache: str = _allowed("none", "none, prefix or dual (Fast-dLLM's KV caches)")
    record_trajectory: bool = _allowed(False, "true or false")
    log_samples: bool = _allowed(False, "true or false")
    plot: bool = _allowed(True, "true or false")
    progress: bool = _allowed(True, "true or false")
    threads: int | None = _allowed(None, "a positive integer (or null for torch's default)")
    report: bool = _allowed(True, "true or false (a sweep writes its tables and plots when done)")
    confirm_run_unsafe_code: bool = _allowed(True, "true or false (tasks that execute generated code)")
    #: where rows are written; None outside a Hydra run when it names Hydra's run folder
    output_dir: str | None = _allowed(None, "a folder")
    #: the `sweep:` block (configs/sweep/<name>.yaml), parsed by `boe_eval.harness.sweep.read_sweep`
    sweep: Any = _allowed(None, "a mapping (configs/sweep/<name>.yaml)")
    #: how a one-sampler job is named in rows (`variant`): set by `validate_job` from Hydra's choices
    sampler_label: str | None = _allowed(None, "a string")

    @property
    def layout(self) -> tuple[int, int, int]:
        """(gen_length, steps, block_length), block_length null meaning one block of gen_length."""
        return self.gen_length, self.steps, self.block_length if self.block_length is not None else self.gen_length

    def check(self) -> None:
        from boe_eval.decoding.loop import DecodeConfig

        for name in ("limit", "batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}={value!r} is invalid: it must be {_allowed_text(JobSpec, name)}")
        for name in ("limit", "batch_size", "threads", "gen_length", "steps", "block_length"):
            value = getattr(self, name)
            if value is not None and value > MAX_INT:
                raise ConfigError(f"{name}={value!r} is invalid: it must be at most 2**63 - 1 = {MAX_INT} "
                                  f"({_allowed_text(JobSpec, name)})")
        if self.block_length is not None and self.block_length <= 0:  # (the loop reads 0 as "one block")
            raise ConfigError(f"block_length={self.block_length!r} is invalid: it must be a positive integer dividing "
                              f"gen_length={self.gen_length} (or null for one block of gen_length)")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed={self.seed!r} is invalid: it must be an integer in [0, 2**32 - 1] (numpy's seed range)")
        # temperature and the layout: the decoding loop's own rules, checked here before any model loads
        DecodeConfig(gen_length=self.gen_length, steps=self.steps, block_length=self.block_length,
                     temperature=self.temperature).validate()
        from boe_eval.models.kv_cache import check_cache_mode

        check_cache_mode(self.cache)
        self.model.check()
        self.sampler.check()


JobSchema = JobSpec  #: the name this class had before it was kept as the run spec


def _allowed_text(cls: type, name: str) -> str:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("allowed", "")
    return ""


def _schema_paths(cls: type, prefix: str = "") -> dict[str, str]:
    """{dotted key: allowed text} for every leaf field of a schema dataclass."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(_schema_paths(hint, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = f.metadata.get("allowed", "")
    return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


_ABSENT = object()
#: settings whose value may only be known inside a Hydra run (`${hydra:runtime.output_dir}`)
_RUN_TIME_KEYS = ("output_dir",)


def _optional(cls: type, dotted: str) -> bool:
    """Whether the schema field at `dotted` accepts null."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    hint = typing.get_type_hints(cls)[leaf]
    return hint is Any or type(None) in typing.get_args(hint)


def validate_job(cfg: DictConfig) -> JobSpec:
    """The typed run spec of a composed job config: types and ranges of every field checked once (no
    model, no data). Inside a Hydra run the sampler's label (`variant` in rows) is read here too."""
    allowed = _schema_paths(JobSpec)
    given: dict[str, Any] = {}
    for key in allowed:
        if key == "sampler_label":
            continue
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=True)
        except OmegaConfBaseException as err:
            if key in _RUN_TIME_KEYS:
                continue
            raise ConfigError(f"{key} cannot be resolved: {_first_line(err)}") from None
        if value is None and not _optional(JobSpec, key) and _default(JobSpec, key) not in (dataclasses.MISSING, MISSING):
            # null given for a setting that has a default but no null meaning (batch_size=null)
            raise ConfigError(f"{key}=null is invalid: it must be {allowed.get(key, '')}")
        if value is not None and value is not _ABSENT:
            given[key] = _plain(value)
    nested: dict[str, Any] = {}
    for key, value in given.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        typed = OmegaConf.merge(OmegaConf.structured(JobSpec), nested)
        job = OmegaConf.to_object(typed)
    except OmegaConfBaseException as err:
        key = str(err.full_key or err.key or "")
        if "missing mandatory value" in str(err):
            group = key.split(".")[0]
            raise ConfigError(f"{key} is missing: the {group} config must set it ({allowed.get(key, '')})") from None
        shown = given.get(key, "?")
        raise ConfigError(f"{key}={shown!r} is invalid: it must be {allowed.get(key) or _first_line(err)}") from None
    job.check()
    if not job.sampler.members:
        job.sampler_label = sampler_label(job.sampler.name)
    return job


def _default(cls: type, dotted: str) -> Any:
    *parents, leaf = dotted.split(".")
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    for f in dataclasses.fields(cls):
        if f.name == leaf:
            return f.default if f.default_factory is dataclasses.MISSING else f.default_factory
    return dataclasses.MISSING


def sampler_label(name: str) -> str:
    """How a one-sampler job is named in tables and plots: the Hydra sampler config chosen (e.g.
    `boe_no_gating`, which is `boe` with one switch changed) followed by any `sampler.params.*`
    overrides of the command line, so the runs of `-m sampler=boe,boe_no_gating` or of a swept
    parameter stay apart. Outside a Hydra run (tests, scripts, the pre-flight): the sampler's name."""
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


# ---------------------------------------------------------------------------------- sampler params
def _simple_type(hint: Any) -> tuple[tuple[type, ...], bool] | None:
    """(accepted types, optional) for int/float/bool/str (optionally `| None`); None otherwise."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            return None
        hint = args[0]
    if hint is float:
        return (int, float), optional
    if hint in (int, bool, str):
        return (hint,), optional
    return None


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_sampler_params(name: str, params: dict[str, Any], prefix: str = "sampler.params") -> None:
    """Check parameter names and simple types against the sampler's config dataclass, then the
    config's own `validate()` (ranges such as BoE's rho in (0, 1])."""
    import boe_eval.samplers  # noqa: F401  (registers every sampler module)
    from boe_eval.samplers.base import SAMPLERS, build_sampler

    if name not in SAMPLERS:
        build_sampler(name)  # raises the one-line "unknown sampler" error
    config_cls = SAMPLERS[name][1]
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for key, value in params.items():
        if key not in fields:
            allowed = ", ".join(sorted(fields)) or "none"
            raise ConfigError(f"sampler {name!r} has no parameter {key!r}: its parameters are {allowed}")
        simple = _simple_type(hints.get(key))
        if simple is None:
            continue
        accepted, optional = simple
        if value is None and optional:
            continue
        if isinstance(value, bool) and bool not in accepted or not isinstance(value, accepted):
            words = _TYPE_WORDS[accepted[-1]] + (" (or null)" if optional else "")
            raise ConfigError(f"{prefix}.{key}={value!r} is invalid: sampler {name!r} needs {words}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}.{key}={value!r} is invalid: it must be a finite number")
    build_sampler(name, **params)  # the config's validate(): ranges


# ---------------------------------------------------------------------------------- command line
_SKIP_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun", "config_path",
               "config_dir", "version")


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _hydra_error(err: Exception, overrides: Sequence[str], compose: Callable[[list[str]], DictConfig],
                 config_dir: Path | None = None) -> ConfigError:
    """One line for a Hydra composition error."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if isinstance(err, MissingConfigException) and getattr(err, "missing_cfg_file", None):
        group, _, choice = str(err.missing_cfg_file).rpartition("/")
        options = ", ".join(getattr(err, "options", None) or []) or "none"
        if group:
            return ConfigError(f"{group}={choice!r} is unknown: choose one of {options}")
    if isinstance(err, OverrideParseException):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create()
        for text in overrides:
            try:
                parser.parse_overrides([text])
            except OverrideParseException as bad:
                odd = next((c for c in text if ord(c) > 127), None)
                if odd is not None:
                    key, _, value = text.partition("=")
                    return ConfigError(
                        f"the override {_shorten(text)!r} cannot be parsed: the non-ASCII character {odd!r} "
                        f"(U+{ord(odd):04X}) is allowed only inside quotes: write {key}='{_shorten(value)}'")
                return ConfigError(f"the override {_shorten(text)!r} cannot be parsed: {_first_line(bad)}")
    if isinstance(err, OSError):  # a group choice no file system can name (e.g. 5000 characters)
        text = max(overrides, key=len) if overrides else ""
        key, _, value = text.partition("=")
        group = key.lstrip("+~")
        options = sorted(p.stem for p in (Path(config_dir) / group).glob("*.yaml")) if config_dir else []
        choose = f": choose one of {', '.join(options)}" if options else ""
        return ConfigError(f"{group}={_shorten(value)!r} ({len(value)} characters) is unknown: "
                           f"{err.strerror or _first_line(err)}{choose}")
    cause = err.__cause__  # a setting the composed config does not have: OmegaConf names its full key
    if isinstance(err, ConfigCompositionException) and isinstance(cause, (ConfigAttributeError, ConfigKeyError)) \
            and cause.full_key:
        key = str(cause.full_key)
        text = next((o for o in overrides if o.lstrip("+~").split("=")[0] == key), key)
        parent, _, leaf = key.rpartition(".")
        try:
            base = compose([o for o in overrides if o != text])
            node = OmegaConf.select(base, parent) if parent else base
            known = ", ".join(str(k) for k in node.keys()) if isinstance(node, DictConfig) else ""
        except Exception:  # the listing is a courtesy; the error line stands without it
            known = ""
        where = f"{parent}." if parent else ""
        hint = f": the settings of {parent or 'the job'} are {known}" if known else ""
        return ConfigError(f"{text!r} is invalid: {where}{leaf} is not a setting{hint} (add a new key with +{text.lstrip('+')})")
    return ConfigError(_first_line(err))


def _grid(parsed: Sequence[Any]) -> list[list[str]]:
    """The jobs of a `-m` command line as Hydra's basic sweeper makes them (its documented behaviour,
    through the public `Override` API): the cartesian product of every discrete sweep's values
    (`key=a,b`, `range(...)`, `choice(...)`), a later override of a key replacing an earlier one."""
    import itertools

    from hydra.errors import HydraException

    axes: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            axes[key] = [f"{key}={value}" for value in o.sweep_string_iterator()]
        else:
            raise HydraException(f"the override {o.input_line!r} is an interval sweep, which a -m grid cannot list")
    return [list(job) for job in itertools.product(*axes.values())]


def preflight(argv: Sequence[str], config_dir: Path, validate: Callable[[JobSpec], Any],
              config_name: str = "config") -> int:
    """Compose every job the command line asks for (each cell of a `-m` grid of command-line sweeps),
    turn each into its typed spec (`validate_job`) and hand it to `validate` (the checks that read
    files) before Hydra runs any. Returns the number of jobs checked (0 when the command only asks
    Hydra for help or a config dump)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra._internal.utils import get_args_parser  # (Hydra's own command line, so flags parse as it will)
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        args = get_args_parser().parse_args(list(argv))
    except SystemExit:
        return 0  # argparse already printed its usage error; Hydra will print it again
    if any(getattr(args, flag, None) for flag in _SKIP_FLAGS):
        return 0
    name = args.config_name or config_name

    def compose(overrides: list[str]) -> DictConfig:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return hydra_compose(config_name=name, overrides=overrides)

    overrides = list(args.overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        jobs = _grid(parsed) if args.multirun else [overrides]
    except HydraException as err:
        raise _hydra_error(err, overrides, compose, config_dir) from None
    configs = []
    for job in jobs:
        try:
            configs.append(compose(job))
        except (HydraException, OmegaConfBaseException, OSError) as err:
            raise _hydra_error(err, job, compose, config_dir) from None
    specs = [validate_job(cfg) for cfg in configs]  # the cheap checks of every cell first, then the ones that read files
    for job in specs:
        validate(job)
    return len(jobs)


__all__ = [
    "JobSchema",
    "JobSpec",
    "ModelSchema",
    "SamplerSchema",
    "TaskSchema",
    "check_model_dir",
    "check_sampler_params",
    "check_device_available",
    "check_task_data",
    "check_task_yaml",
    "preflight",
    "sampler_label",
    "validate_job",
]
