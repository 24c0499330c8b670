"""What one decoding step of a sampler costs, and the knob a compute-matched sweep turns (docs/references.md §10).
Each sampler class declares its `knob` (a `KnobRule`); the sweep planner reads it (`harness/sweep/solver.py`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from boe_eval.errors import ConfigError


@dataclass(frozen=True)
class StepCost:
    """Compute of one decoding step of a sampler: NFE (paper accounting: every denoiser invocation),
    forwards actually run (default: one per NFE) and backwards."""

    nfe: float
    forwards: float | None = None
    backwards: float = 0.0

    def on(self, axis: str, backward_cost: float = 2.0) -> float:
        """Cost of one step on a budget axis (`wall_time` is converted through forward-equivalents)."""
        if axis == "steps":
            return 1.0
        if axis == "nfe":
            return self.nfe
        forwards = self.nfe if self.forwards is None else self.forwards
        return forwards + backward_cost * self.backwards


@dataclass(frozen=True)
class VaryingStepCost(StepCost):
    """A step whose compute varies from step to step (e.g. one forward per candidate of C_t): only the fixed-horizon
    `steps` axis can place it; its rows carry the measured compute."""

    sampler: str = ""
    what: str = ""

    def on(self, axis: str, backward_cost: float = 2.0) -> float:
        if axis == "steps":
            return 1.0
        raise ConfigError(f"sampler {self.sampler!r} spends {self.what} per step, which varies from step to step: a "
                          f"{axis} budget cannot set its steps; use budget_axis: steps (its rows carry the measured "
                          "compute)")


@dataclass(frozen=True)
class KnobRule:
    """How a sampler's own knob follows from a compute budget."""

    step_cost: Callable[[Mapping[str, Any]], StepCost]
    #: name of the parameter an adaptive sampler sweeps instead of steps (placed at measured compute)
    adaptive: str | None = None
    #: the sampler may finish a block in fewer steps than planned (measured compute <= planned)
    early_exit: bool = False
    #: after its planned steps the sampler makes one more call to fill any slot still masked (ReMDM's final argmax)
    final_call: bool = False
    note: str = ""


#: one forward a step, steps = budget (the top-k family)
ONE_FORWARD = KnobRule(lambda p: StepCost(1), note="steps = budget")

__all__ = ["ONE_FORWARD", "KnobRule", "StepCost", "VaryingStepCost"]
