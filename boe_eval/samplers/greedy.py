"""Top-k greedy baselines (docs/references.md §3): confidence, margin, entropy and random order.

Scores use the untempered distribution p_theta(. | x_t) as LLaDA does, even when the written token is
sampled at a temperature; the choice is restricted to the current block; the step budget comes
from the loop's schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import ONE_FORWARD
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler, top_k_mask


@dataclass
class GreedyConfig(SamplerConfig):
    pass


@register_sampler("confidence", GreedyConfig)
class ConfidenceSampler(Sampler):
    """s_i = p_i(x0_i) (LLaDA `low_confidence`; MaskGIT)."""

    knob = ONE_FORWARD

    def select(self, ctx: StepContext) -> StepDecision:
        return StepDecision(commit=top_k_mask(ctx.confidence, ctx))


@register_sampler("margin", GreedyConfig)
class MarginSampler(Sampler):
    """s_i = p_i(1) - p_i(2) (Kim et al. 2025 top-probability margin; Dream `topk_margin`)."""

    knob = ONE_FORWARD

    def select(self, ctx: StepContext) -> StepDecision:
        return StepDecision(commit=top_k_mask(ctx.margin, ctx))


@register_sampler("entropy", GreedyConfig)
class EntropySampler(Sampler):
    """s_i = -H(p_i) (Dream `entropy`; Koh et al. 2024): lowest entropy first."""

    knob = ONE_FORWARD

    def select(self, ctx: StepContext) -> StepDecision:
        return StepDecision(commit=top_k_mask(-ctx.entropy, ctx))


@register_sampler("random", GreedyConfig)
class RandomSampler(Sampler):
    """s_i ~ U(0, 1) per slot (LLaDA `random` remasking), drawn from each row's own generator."""

    knob = ONE_FORWARD

    def select(self, ctx: StepContext) -> StepDecision:
        # draw over each row's own real length of the whole canvas (LLaDA draws for every position), so the
        # draws depend neither on the batch's padding nor on the step window (`ctx.offset` prompt columns)
        scores = torch.zeros(ctx.x.shape, dtype=torch.float32, device=ctx.x.device)
        for j, g in enumerate(ctx.generators):
            n = int(ctx.attention_mask[j].sum())
            draws = torch.rand(ctx.offset + n, generator=g, device=g.device)
            scores[j, :n] = draws[ctx.offset :].to(scores.device)
        return StepDecision(commit=top_k_mask(scores, ctx))
