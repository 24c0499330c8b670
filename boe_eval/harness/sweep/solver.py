"""Each sampler's knob for a compute budget, and whether the compute a cell spent was honest.

The cost of one decoding step is the sampler's own declaration (`Sampler.knob`, a `KnobRule`:
boe_eval/samplers/README.md); steps = the step count whose planned cost is nearest the budget among
those the layout allows. Adaptive samplers (EB-Sampler) sweep their own parameter and are placed at
their measured compute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from boe_eval.compute_axes import BUDGET_AXES, MEASURED_COLUMN
from boe_eval.errors import ConfigError
from boe_eval.samplers.cost import KnobRule


def knob_rule(sampler: str) -> KnobRule:
    """The cost and knob a registered sampler declares (`Sampler.knob`, boe_eval/samplers/README.md)."""
    import boe_eval.samplers  # noqa: F401  (registers every sampler module)
    from boe_eval.samplers.base import SAMPLERS

    rule = SAMPLERS[sampler][0].knob if sampler in SAMPLERS else None
    if rule is None:
        with_rules = sorted(name for name, (cls, _) in SAMPLERS.items() if cls.knob is not None)
        raise ConfigError(
            f"sampler {sampler!r} has no compute-matching rule: samplers with one are {', '.join(with_rules)}"
        )
    return rule


@dataclass(frozen=True)
class Assignment:
    """A sampler's knob for one budget and the compute it plans to spend."""

    steps: int
    step_cost: float  #: cost of one step on the budget axis (wall time: forward-equivalents)
    planned_cost: float  #: steps x step_cost (wall time: forward-equivalents)


def derive_steps(
    sampler: str,
    params: Mapping[str, Any],
    budget: float,
    axis: str,
    gen_length: int,
    block_length: int,
    backward_cost: float = 2.0,
    seconds_per_forward: float | None = None,
) -> Assignment:
    """Steps whose planned compute is nearest `budget` on `axis` (ties to fewer steps), among the step
    counts the layout allows (a multiple of the number of blocks, at most gen_length). Raises
    ConfigError when no step count lands within one step's cost of the budget."""
    if axis not in BUDGET_AXES:
        raise ConfigError(f"budget_axis={axis!r} is invalid: choose one of {', '.join(BUDGET_AXES)}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise ConfigError(f"budget={budget!r} is invalid: budgets must be positive numbers")
    rule = knob_rule(sampler)
    num_blocks = gen_length // block_length
    cost = rule.step_cost(params).on(axis, backward_cost)
    target = float(budget)
    if axis == "wall_time":
        if not seconds_per_forward:
            raise ConfigError("budget_axis=wall_time needs a measured seconds per forward-equivalent (calibration)")
        target = budget / seconds_per_forward
    choices = range(num_blocks, gen_length + 1, num_blocks)
    steps = min(choices, key=lambda s: (abs(s * cost - target), s))
    planned = steps * cost
    if axis != "wall_time" and abs(planned - target) > cost + 1e-9:
        near = sorted({s * cost for s in choices}, key=lambda c: abs(c - target))[:2]
        raise ConfigError(
            f"budget={budget:g} ({axis}) cannot be met by {sampler} within one step's cost ({cost:g}): its steps must "
            f"be a multiple of {num_blocks} (gen_length {gen_length} / block_length {block_length}) and at most "
            f"{gen_length}; the nearest budgets it can meet are {', '.join(f'{c:g}' for c in sorted(near))}"
        )
    return Assignment(steps=steps, step_cost=cost, planned_cost=planned)



def measured_cost(summary: Mapping[str, Any], axis: str) -> float | None:
    """Mean compute per sequence of a run on a budget axis (wall time: decoding seconds per sequence,
    the meter's per-sequence share of each model call)."""
    if axis == "wall_time":
        n = summary.get("n_examples") or 0
        seconds = summary.get("decode_time_s")
        return seconds / n if n and seconds is not None else None
    return summary.get(MEASURED_COLUMN[axis])


def budget_check(cell: Any, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Fields added to every row of a cell (a `plan.SweepCell`): the derived knob, the planned compute
    and whether the measured compute is honest (within one step's cost of the budget; <= budget + one step for
    samplers that may finish early; adaptive samplers are placed at their measured compute; a `steps`
    axis is a fixed horizon, not a compute budget, so it is not checked)."""
    axis = cell.spec.extra["budget_axis"]
    measured = measured_cost(summary, axis)
    out: dict[str, Any] = {
        "sweep.knob": cell.rule.adaptive or "steps",
        "sweep.knob_value": cell.spec.sampler_params.get(cell.rule.adaptive) if cell.rule.adaptive else cell.spec.steps,
        "sweep.measured_cost": measured,
        "sweep.placement": "measured" if (cell.rule.adaptive or cell.rule.early_exit or axis == "wall_time")
        else "budget",
    }
    if cell.assignment is None or measured is None or axis in ("wall_time", "steps"):
        out.update({"sweep.planned_cost": cell.assignment.planned_cost if cell.assignment else None,
                    "sweep.step_cost": cell.assignment.step_cost if cell.assignment else None,
                    "sweep.budget_gap": None, "sweep.within_one_step": None})
        return out
    gap = measured - cell.budget
    tolerance = cell.assignment.step_cost + 1e-9
    honest = gap <= tolerance if cell.rule.early_exit else abs(gap) <= tolerance
    out.update({"sweep.planned_cost": cell.assignment.planned_cost, "sweep.step_cost": cell.assignment.step_cost,
                "sweep.budget_gap": gap, "sweep.within_one_step": bool(honest)})
    return out


