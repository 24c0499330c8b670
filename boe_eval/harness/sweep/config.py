"""The `sweep:` block of a job (configs/sweep/<name>.yaml), read and validated into a `SweepConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from boe_eval.compute_axes import BUDGET_AXES
from boe_eval.errors import ConfigError
from boe_eval.harness.sweep.solver import knob_rule

if TYPE_CHECKING:
    from boe_eval.harness.schema import JobSpec


@dataclass
class SweepEntry:
    """One sampler of a sweep: its name, fixed parameters, a display label (the variant) and, for an
    adaptive sampler, the values of its swept parameter."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    grid: list[Any] | None = None

    def __post_init__(self) -> None:
        self.label = self.label or self.name


@dataclass
class SweepConfig:
    name: str
    budget_axis: str
    budgets: list[float]
    samplers: list[SweepEntry]
    seeds: list[int]
    only_sampler: str | None = None
    only_budget: float | None = None
    #: KV cache modes to run every sampler at (`sweep.caches`; None: the job's `cache`); a sampler the cache does
    #: not serve (BoE, WINO: `kv_cache.cache_refusal`) runs at none only
    caches: list[str] | None = None


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def read_sweep(job: JobSpec | DictConfig) -> SweepConfig:
    """Validate the job's `sweep:` block (one-line ConfigError naming the bad field). Of the rest of
    the job it reads `gen_length` (budget fractions) and `seed` (the default seeds), which the job's
    spec has validated."""
    raw = _plain(job.sweep)
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep={raw!r} is invalid: it must be a mapping (configs/sweep/<name>.yaml)")
    name = raw.get("name")
    if not name or not isinstance(name, str):
        raise ConfigError(f"sweep.name={name!r} is invalid: give the sweep a name (it names the results folder)")
    axis = raw.get("budget_axis", "nfe")
    if axis not in BUDGET_AXES:
        raise ConfigError(f"sweep.budget_axis={axis!r} is invalid: choose one of {', '.join(BUDGET_AXES)}")
    budgets, fractions = raw.get("budgets"), raw.get("budget_fractions")
    if budgets is not None and fractions is not None:
        raise ConfigError("sweep.budgets and sweep.budget_fractions are both set: give one of them")
    key = "budget_fractions" if fractions is not None else "budgets"
    values = fractions if fractions is not None else budgets
    if not isinstance(values, list) or not values:
        raise ConfigError(f"sweep.{key}={values!r} is invalid: give a non-empty list of positive numbers")
    for b in values:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
            raise ConfigError(f"sweep.{key} contains {b!r}: budgets must be positive numbers")
    if fractions is not None:  # budget = fraction x gen_length (e.g. 0.5: the d1 protocol's T = L/2)
        budgets = [f * job.gen_length for f in fractions]
        budgets = [int(b) if float(b).is_integer() else b for b in budgets]
    entries = []
    for item in raw.get("samplers") or []:
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"sweep.samplers entry {item!r} is invalid: use a name or {{name, params, label, grid}}")
        unknown = sorted(set(item) - {"name", "params", "label", "grid"})
        if unknown:
            raise ConfigError(f"sweep.samplers entry {item['name']!r} has unknown key {unknown[0]!r}: "
                              "allowed are name, params, label, grid")
        rule = knob_rule(str(item["name"]))
        grid = item.get("grid")
        if rule.adaptive and not grid:
            raise ConfigError(f"sweep.samplers entry {item['name']!r} is adaptive: give grid: [values of "
                              f"{rule.adaptive}] (each run is placed at its measured compute)")
        if grid and not rule.adaptive:
            raise ConfigError(f"sweep.samplers entry {item['name']!r} takes no grid: its steps follow from the budgets")
        entries.append(SweepEntry(str(item["name"]), dict(item.get("params") or {}), str(item.get("label") or ""),
                                  list(grid) if grid else None))
    if not entries:
        raise ConfigError("sweep.samplers is empty: list the samplers to compare")
    labels = [e.label for e in entries]
    duplicate = next((lab for lab in labels if labels.count(lab) > 1), None)
    if duplicate:
        raise ConfigError(f"sweep.samplers has two entries labelled {duplicate!r}: give each variant its own label")
    seeds = raw.get("seeds")
    seeds = [job.seed] if seeds is None else seeds
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"sweep.seeds={seeds!r} is invalid: give a list of integers (or null for the seed key)")
    only = raw.get("only") or {}
    only_sampler = only.get("sampler")
    if only_sampler is not None and str(only_sampler) not in labels + [e.name for e in entries]:
        raise ConfigError(f"sweep.only.sampler={only_sampler!r} is not in this sweep: its samplers are {', '.join(labels)}")
    only_budget = only.get("budget")
    if only_budget is not None and only_budget not in budgets:
        raise ConfigError(f"sweep.only.budget={only_budget!r} is not in this sweep: its budgets are {budgets}")
    caches = raw.get("caches")
    if caches is not None:
        from boe_eval.models.kv_cache import CACHE_MODES

        if not isinstance(caches, list) or not caches or any(c not in CACHE_MODES for c in caches):
            raise ConfigError(f"sweep.caches={caches!r} is invalid: give a list of {', '.join(CACHE_MODES)} "
                              "(or leave it out for the cache key)")
    return SweepConfig(str(name), axis, list(budgets), entries, list(seeds),
                       None if only_sampler is None else str(only_sampler), only_budget,
                       None if caches is None else [str(c) for c in caches])


