"""EB-Sampler (Ben-Hamu et al., arXiv 2505.24857, Fig. 4 / App. B Alg. 1; docs/references.md §6).

Per step: order the masked slots of the current block by an error proxy (best first: highest
confidence, lowest entropy or highest margin), then commit the longest prefix U of that order with

    sum_{j in U} H_j - max_{j in U} H_j <= gamma        (H in nats, at least one slot)

i.e. `k = ((cumsum(H) - cummax(H)) <= gamma).sum()` of the paper's code, clamped to [1, #masked].
gamma = 0 commits one slot per step (the Top-1 sampler of the same proxy); gamma = inf the whole block in
one step. The step budget of the schedule is ignored: the number of steps, and so the NFE, is adaptive.
Suppressed slots (EOS/EoT predictions) come last in the order, as in every top-k sampler here.
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

ERROR_PROXIES = ("confidence", "entropy", "margin")


@dataclass
class EbConfig(SamplerConfig):
    #: entropy budget per step (nats); the paper's grid is 0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 1, 1.5;
    #: 0.01 is the default of PC-Sampler's implementation (`generate_with_eb_sampler`)
    gamma: float = 0.01
    #: order of the slots: confidence (paper's best for LLaDA), entropy (best for Dream) or margin
    error_proxy: str = "confidence"

    def validate(self) -> None:
        if self.gamma is None or math.isnan(self.gamma) or self.gamma < 0:
            raise ConfigError(f"gamma={self.gamma!r} is invalid: it must be a number >= 0")
        if self.error_proxy not in ERROR_PROXIES:
            raise ConfigError(f"error_proxy={self.error_proxy!r} is unknown: choose one of {', '.join(ERROR_PROXIES)}")


def proxy_scores(ctx: StepContext, error_proxy: str) -> Tensor:
    """Higher = lower error: the top-1 probability max_v p(v), -H or the top-2 margin [b, L]. (The
    top-1 probability equals p(x0) at T = 0; at T > 0 the proxy does not depend on the sampled token.)"""
    if error_proxy == "confidence":
        return ctx.probs.max(-1).values
    if error_proxy == "entropy":
        return -ctx.entropy
    return ctx.margin


def entropy_bounded_count(scores: Tensor, entropy: Tensor, ctx: StepContext, gamma: float) -> Tensor:
    """Per row, the length k of the longest prefix of the proxy order (eligible slots, suppressed last,
    ties to the left as in `top_k_mask`) whose entropy sum minus entropy max is <= gamma; k >= 1."""
    key = scores.double().masked_fill(ctx.suppressed, torch.finfo(torch.float64).min)
    key = key.masked_fill(~ctx.eligible, float("-inf"))
    order = torch.argsort(key, dim=1, descending=True, stable=True)
    ordered = entropy.double().gather(1, order)
    ordered_eligible = ctx.eligible.gather(1, order)
    ordered = torch.where(ordered_eligible, ordered, torch.zeros_like(ordered))
    excess = torch.cumsum(ordered, dim=1) - torch.cummax(ordered, dim=1).values
    count = ((excess <= gamma) & ordered_eligible).sum(1)
    return torch.clamp(torch.minimum(count, ctx.eligible.sum(1)), min=1)


@register_sampler("eb", EbConfig)
class EbSampler(Sampler):
    """Commit the longest proxy-ordered prefix whose entropy excess over its maximum is <= gamma."""

    knob = KnobRule(lambda p: StepCost(1), adaptive="gamma", note="gamma swept, placed at measured NFE")

    config: EbConfig

    def select(self, ctx: StepContext) -> StepDecision:
        scores = proxy_scores(ctx, self.config.error_proxy)
        count = entropy_bounded_count(scores, ctx.entropy, ctx, self.config.gamma)
        return StepDecision(commit=top_k_mask(scores, ctx, k=count))
