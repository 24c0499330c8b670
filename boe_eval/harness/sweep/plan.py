"""The cells of a sweep: one `CellSpec` per sampler x budget (or grid value) x seed, derived from the
job's spec, every input checked, no model loaded."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from boe_eval.errors import ConfigError
from boe_eval.harness.sweep.config import SweepConfig, SweepEntry, read_sweep
from boe_eval.harness.sweep.solver import Assignment, derive_steps, knob_rule
from boe_eval.samplers.cost import KnobRule

if TYPE_CHECKING:
    from boe_eval.harness.schema import JobSpec


@dataclass
class SweepCell:
    spec: Any  #: CellSpec
    sampler: Any  #: Sampler
    entry: SweepEntry
    budget: float | None  #: None for an adaptive sampler's grid point
    assignment: Assignment | None
    rule: KnobRule
    order: int  #: position of the sampler entry in the sweep (tables list samplers in this order)


def plan_sweep(job: JobSpec | DictConfig, seconds_per_forward: float | None = None,
               sweep: SweepConfig | None = None) -> list[SweepCell]:
    """Every cell of the job's sweep (after `sweep.only` selection), each a `CellSpec` derived from
    the job's spec, its inputs checked once, without loading a model."""
    from boe_eval.harness.specs import as_job, check_inputs

    job = as_job(job)
    sweep = sweep or read_sweep(job)
    check_inputs(job)  # model directory, task, data: once for every cell
    cells: list[SweepCell] = []
    for cache in sweep.caches or [job.cache]:
        cells += _cache_cells(dataclasses.replace(job, cache=cache), sweep, seconds_per_forward,
                              refuse=sweep.caches is None)
    if not cells:
        raise ConfigError(f"sweep {sweep.name!r} selects no cell (sweep.only={sweep.only_sampler!r}, {sweep.only_budget!r})")
    return cells


def _cache_cells(job: JobSpec, sweep: SweepConfig, seconds_per_forward: float | None, refuse: bool) -> list[SweepCell]:
    """The cells at the job's KV cache mode; with `refuse` False (a `sweep.caches` list) a sampler the cache does
    not serve is left out at prefix/dual instead of refusing the sweep."""
    from boe_eval.harness.specs import cell_spec
    from boe_eval.models.kv_cache import cache_refusal
    from boe_eval.samplers.base import build_sampler

    gen_length, _, block_length = job.layout
    backward_cost = 2.0
    cells: list[SweepCell] = []
    for seed in sweep.seeds:
        for order, entry in enumerate(sweep.samplers):
            if sweep.only_sampler is not None and sweep.only_sampler not in (entry.label, entry.name):
                continue
            rule = knob_rule(entry.name)
            if not refuse and cache_refusal(build_sampler(entry.name, **entry.params), job.cache):
                continue
            if rule.adaptive:
                if sweep.only_budget is not None:
                    continue
                # an adaptive sampler sets its own pace; steps = gen_length only bounds the schedule
                points = [({**entry.params, rule.adaptive: value}, None, None) for value in entry.grid or []]
            else:
                points = []
                resolved = build_sampler(entry.name, **entry.params).params()  # defaults filled in (e.g. k)
                for budget in sweep.budgets:
                    if sweep.only_budget is not None and budget != sweep.only_budget:
                        continue
                    a = derive_steps(entry.name, resolved, budget, sweep.budget_axis, gen_length, block_length,
                                     backward_cost, seconds_per_forward)
                    points.append((dict(entry.params), budget, a))
            variant = entry.label if job.cache == "none" else f"{entry.label}+{job.cache}"
            for params, budget, assignment in points:
                steps = assignment.steps if assignment else gen_length
                spec, sampler = cell_spec(job, entry.name, params, steps=steps, seed=seed, label=entry.label,
                                          extra={"budget_axis": sweep.budget_axis, "budget": budget,
                                                 "variant": variant})
                cells.append(SweepCell(spec, sampler, entry, budget, assignment, rule, order))
    return cells


