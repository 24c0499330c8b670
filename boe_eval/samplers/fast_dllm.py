"""Fast-dLLM parallel decoding (Wu et al., arXiv 2505.22618; `NVlabs/Fast-dLLM` `llada/generate.py`,
`get_transfer_index` with `threshold` and `get_transfer_index_dynamic` with `factor`; docs/samplers/fast_dllm.md).

Both rules look only at the masked slots of the current block and their confidence c_i = p(x0_i):

* `threshold` (paper Sec. 3.3, confidence-aware parallel decoding): commit every masked slot with
  c_i >= tau, and always at least the most confident one.
* `factor` (paper Thm. 1 / the dynamic rule): sort c_(1) >= c_(2) >= ... >= c_(N) and commit the
  longest prefix whose j-th confidence satisfies c_(j) >= 1 - f / (j + 1) (the first slot always
  passes). The reference's loop also commits the last slot when the first failure is at j = N (its
  `top_i == len - 1` branch serves both "all passed" and "only the last failed"); this is kept, so
  tokens and NFE equal the reference's.

The schedule's step budget is ignored: the number of steps, and so the NFE, is adaptive. The harness's
suppressed slots (EOS/EoT predictions, -inf confidence) never pass a threshold and rank last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.errors import ConfigError
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import KnobRule, StepCost
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler, top_k_mask


@dataclass
class ThresholdConfig(SamplerConfig):
    #: tau: confidence a masked slot needs to be committed in parallel (Fast-dLLM `eval_gsm8k.sh`: 0.9)
    threshold: float = 0.9

    def validate(self) -> None:
        if self.threshold is None or isinstance(self.threshold, bool) or not 0 <= self.threshold <= 1:
            raise ConfigError(f"threshold={self.threshold!r} is invalid: it must be a number in [0, 1]")


@dataclass
class FactorConfig(SamplerConfig):
    #: f: the j-th most confident slot is committed while c_(j) >= 1 - f / (j + 1) (`eval_gsm8k.sh`: 1.0)
    factor: float = 1.0

    def validate(self) -> None:
        if self.factor is None or isinstance(self.factor, bool) or not math.isfinite(self.factor) or self.factor < 0:
            raise ConfigError(f"factor={self.factor!r} is invalid: it must be a finite number >= 0")


def ranked_confidence(ctx: StepContext) -> tuple[Tensor, Tensor]:
    """Confidence with suppressed slots at -inf and ineligible ones below everything, float64 [b, L], and
    the descending order of it per row (ties to the leftmost slot, as `top_k_mask`)."""
    key = ctx.confidence.double().masked_fill(ctx.suppressed, float("-inf"))
    order_key = key.masked_fill(ctx.suppressed, torch.finfo(torch.float64).min).masked_fill(~ctx.eligible, float("-inf"))
    order = torch.argsort(order_key, dim=1, descending=True, stable=True)
    return key, order


def threshold_commit(ctx: StepContext, threshold: float) -> Tensor:
    """Eligible slots with confidence >= threshold, plus the top-1 of each row [b, L]."""
    key, _ = ranked_confidence(ctx)
    above = (key >= threshold) & ctx.eligible & ~ctx.suppressed
    one = torch.ones_like(ctx.budget)
    return above | top_k_mask(ctx.confidence, ctx, k=one)


def factor_count(ctx: StepContext, factor: float) -> Tensor:
    """Per row, the number of slots the dynamic rule commits (>= 1 where a slot is eligible)."""
    key, order = ranked_confidence(ctx)
    n = ctx.eligible.sum(1)
    ordered = key.gather(1, order)  # eligible slots first, best first
    j = torch.arange(1, key.shape[1] + 1, device=key.device, dtype=torch.float64)
    floor = 1.0 - factor / (j + 1.0)
    floor[0] = float("-inf")  # the first slot always passes
    ok = ordered >= floor[None, :]
    ok = ok | (j[None, :] > n[:, None].double())  # slots past the eligible ones never stop the scan
    failed = ~ok
    first_fail = torch.where(failed.any(1), failed.double().argmax(1), n.double()).long()  # 0-based index
    # reference quirk: a first failure at the last eligible slot still commits every slot
    count = torch.where(first_fail == n - 1, n, first_fail)
    return torch.clamp(torch.minimum(count, n), min=1)


@register_sampler("threshold", ThresholdConfig)
class ThresholdSampler(Sampler):
    """Fast-dLLM confidence-threshold parallel decoding: every masked slot with p(x0) >= tau, at least one."""

    knob = KnobRule(lambda p: StepCost(1), adaptive="threshold", note="Fast-dLLM tau swept, placed at measured NFE")

    config: ThresholdConfig

    def select(self, ctx: StepContext) -> StepDecision:
        return StepDecision(commit=threshold_commit(ctx, self.config.threshold))


@register_sampler("factor", FactorConfig)
class FactorSampler(Sampler):
    """Fast-dLLM dynamic rule: the longest confidence-ordered prefix with c_(j) >= 1 - f / (j + 1)."""

    knob = KnobRule(lambda p: StepCost(1), adaptive="factor", note="Fast-dLLM factor swept, placed at measured NFE")

    config: FactorConfig

    def select(self, ctx: StepContext) -> StepDecision:
        return StepDecision(commit=top_k_mask(ctx.confidence, ctx, k=factor_count(ctx, self.config.factor)))
