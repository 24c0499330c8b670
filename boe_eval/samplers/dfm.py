"""MDLM + DFM, the discrete-flow-matching corrector baseline of ReMDM (Wang et al., arXiv 2503.00307, Table 1 and
TABES Table 4; docs/references.md §15, docs/samplers/dfm.md).

As `kuleshov-group/remdm:diffusion.py::_dfm_caching_update` runs it (`sampling.dfm=true`, `scripts/dfm.sh`), the
corrector sampler of Gat et al. 2024 (Discrete Flow Matching, App. D) with its hard-coded corrector schedule on
the log-linear path alpha_t = 1 - t:

    a_t = 10 t^0.25 (1 - t)^0.25 + 1,   b_t = a_t - 1,
    dt  = 1/S at t = 1, else min(1/S, 1 / (a_t / t + b_t / (1 - t))),

so the step shrinks where the corrector is strong and a run of S planned steps takes more iterations
(`dfm_schedule`; 1 forward each). The first iteration (t = 1) is an MDLM step (unmask with probability
(t - s) / t). Every later one: a masked slot is unmasked with probability a_t (alpha_s - alpha_t) / (1 - alpha_t),
its token from the nucleus (top-p 0.9) of p_x0; a written slot of the block is masked again with probability
b_t (alpha_s / alpha_t - 1). Iterations continue while t > (1 - eps)/S (the reference's loop compares with the
outer step (1 - eps)/S, eps = 1e-5); t is rounded to float32 as the reference's tensor holds it. Then one
argmax call fills the slots still masked (noise removal).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from boe_eval.errors import ConfigError
from boe_eval.samplers.base import register_sampler
from boe_eval.samplers.cost import KnobRule, VaryingStepCost
from boe_eval.samplers.remdm import MdlmScheduleConfig, RemdmScheduleSampler, mdlm_transition


@dataclass
class DfmConfig(MdlmScheduleConfig):
    """`nucleus_p` 0.9 as `scripts/dfm.sh`; `min_time` is the reference's eps (1e-5) in its stopping rule."""

    #: the reference's `sampling.steps` S, which sets the schedule (null: the run's steps per block); a sweep
    #: turns this knob and places each run at its measured NFE
    planned_steps: int | None = None

    def validate(self) -> None:
        super().validate()
        if self.planned_steps is not None and (not isinstance(self.planned_steps, int) or isinstance(
                self.planned_steps, bool) or self.planned_steps < 1):
            raise ConfigError(f"planned_steps={self.planned_steps!r} is invalid: it must be a positive integer (or null)")


def corrector_strength(t: float) -> float:
    """a_t = 10 t^0.25 (1 - t)^0.25 + 1 (Gat et al. 2024, App. D; b_t = a_t - 1)."""
    return 10 * t**0.25 * (1 - t) ** 0.25 + 1


@functools.lru_cache(maxsize=64)
def dfm_schedule(steps: int, min_time: float = 1e-5) -> tuple[tuple[float, float], ...]:
    """The (t, s) pairs of the reference's DFM loop for `steps` planned steps."""
    outer_dt = (1 - min_time) / steps
    timestep, pairs = 1.0, []
    while timestep > outer_dt:
        t = float(np.float32(timestep))
        if t == 1:
            dt = 1 / steps
        else:
            a = corrector_strength(t)
            dt = min(1 / steps, 1 / (a / t + (a - 1) / (1 - t)))
        pairs.append((t, float(np.float32(t) - np.float32(dt))))  # float32 arithmetic, as the tensor t - dt
        timestep = t - dt
    return tuple(pairs)


@register_sampler("dfm", DfmConfig)
class DfmSampler(RemdmScheduleSampler):
    """MDLM with the DFM corrector: adaptive steps, remask probability b_t (alpha_s / alpha_t - 1)."""

    knob = KnobRule(lambda p: VaryingStepCost(1, sampler="dfm", what="more iterations than planned steps (the "
                                                 "corrector schedule shortens the step)"),
                    adaptive="planned_steps", final_call=True,
                    note="iterations = len(dfm_schedule(S)) (+1 argmax call if masks remain), placed at measured NFE")

    config: DfmConfig

    def planned(self, steps_per_block: int) -> int:
        return self.config.planned_steps or steps_per_block

    def iterations(self, steps_per_block: int) -> int:
        return len(dfm_schedule(self.planned(steps_per_block), self.config.min_time))

    def times(self, step: int, steps: int) -> tuple[float, float]:
        return dfm_schedule(self.planned(steps), self.config.min_time)[step]

    def transition(self, t: float, s: float) -> tuple[float, float]:
        if t == 1:
            return mdlm_transition(t, s)
        alpha_t, alpha_s = 1 - t, 1 - s
        a = corrector_strength(t)
        return a * (alpha_s - alpha_t) / (1 - alpha_t), (a - 1) * (alpha_s / alpha_t - 1)


__all__ = ["DfmConfig", "DfmSampler", "corrector_strength", "dfm_schedule"]
