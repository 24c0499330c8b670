"""LookUM, lookahead unmasking (Lee, Kim, Park, Park, arXiv 2511.05563; docs/references.md §7).

Per step, with b the step's budget:
1. path generator: the pool P of the max(|P|, b) most certain masked slots of the current block
   ("N-best" by confidence p(x0); suppressed EOS/EoT predictions last), and k candidate unmasking
   sets of b slots, each drawn uniformly from the pool;
2. verifier: each candidate writes the step's proposed tokens x0 at its slots, giving the one-step
   look-ahead state x~; one forward of x~ (through the metered denoiser, so NFE = (1 + k) per step)
   scores it by the mean negative entropy of the look-ahead prediction;
3. selection: normalised importance resampling, one candidate drawn with probability
   softmax(score / selection_temperature) over the k candidates; its slots are committed.

What the paper leaves open (its code was not public) and the choice made here:
- the pool is the top-|P| by confidence ("N-best", the paper's default; the threshold variant's value
  is not reported); when b > |P| the pool grows to b so a candidate can have b slots;
- the k sets are independent uniform draws (two may coincide; each still costs its forward);
- x~ writes the step's proposed tokens x0 (argmax at T=0, the loop's sample at T>0), not new samples;
- "sequence-level uncertainty" = mean entropy over the slots of the generation region still masked
  in x~ (written slots carry no uncertainty for a masked LM); 0 when none is left;
- the importance weights are exp(score / selection_temperature) with temperature 1 by default
  (exp(-mean entropy)); the look-ahead forwards are not reused as the next step's prediction.
Randomness (candidate sets, then the resampling draw) comes from each row's own generator.

Controls (docs/samplers/lookum_controls.md): `signal` replaces the verifier's score, with the same pool, the same
k candidate sets (the same draws from the row's generator) and the same resampling draw. "verifier" (default) is
the method; "negated" resamples on minus the score, softmax(+mean entropy / temperature) (same cost, 1 + k NFE
per step); "random" runs no look-ahead forward and resamples with equal weights, i.e. keeps a uniformly random
candidate of the k (1 NFE per step). `signal` is left out of `params()` at its default, so the existing
configurations keep their result rows and cell ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.errors import ConfigError
from boe_eval.decoding.prediction import entropy, forbid, lookahead_logits
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import KnobRule, StepCost
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler, top_k_mask


SIGNALS = ("verifier", "negated", "random")


@dataclass
class LookumConfig(SamplerConfig):
    #: |P|, size of the pool of most certain masked slots (paper default 5)
    pool_size: int = 5
    #: k, number of candidate unmasking sets verified per step (paper default 2; peak at 2-3)
    k: int = 2
    #: temperature of the importance weights exp(score / temperature) (not reported; 1 = exp(-entropy))
    selection_temperature: float = 1.0
    #: "verifier" (the method), "negated" (minus the verifier's score) or "random" (no verifier, uniform choice)
    signal: str = "verifier"

    def validate(self) -> None:
        for name in ("pool_size", "k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}={value!r} is invalid: it must be a positive integer")
        if not math.isfinite(self.selection_temperature) or self.selection_temperature <= 0:
            raise ConfigError(
                f"selection_temperature={self.selection_temperature!r} is invalid: it must be a finite number > 0"
            )
        if self.signal not in SIGNALS:
            raise ConfigError(f"signal={self.signal!r} is unknown: choose one of {', '.join(SIGNALS)}")


def mean_slot_entropy(slot_logits: Tensor, masked: Tensor) -> Tensor:
    """Per row [b], the mean entropy (nats) of `slot_logits` [n, V], the predictions at the n slots
    of `masked` [b, L] in row-major order; 0 for a row without masked slots."""
    slot_entropy = entropy(slot_logits)
    rows = masked.nonzero()[:, 0]
    total = torch.zeros(masked.shape[0], dtype=slot_entropy.dtype, device=slot_entropy.device)
    total = total.index_add_(0, rows, slot_entropy)
    return total / masked.sum(1).clamp(min=1)


def mean_masked_entropy(logits: Tensor, masked: Tensor) -> Tensor:
    """Mean entropy (nats) of the prediction `logits` [b, L, V] over the `masked` slots of each row [b]."""
    return mean_slot_entropy(logits[masked], masked)


def _lookum_cost(params: Mapping[str, Any]) -> StepCost:
    if "k" not in params:
        raise ConfigError("sampler 'lookum' has no parameter 'k' (number of look-ahead paths) to derive its steps from")
    if params.get("signal") == "random":  # control: no look-ahead forward (docs/samplers/lookum_controls.md)
        return StepCost(nfe=1)
    return StepCost(nfe=1 + int(params["k"]))

@register_sampler("lookum", LookumConfig)
class LookumSampler(Sampler):
    """Sample k unmasking sets from the pool of most certain slots, verify each by a look-ahead forward,
    keep one by normalised importance resampling on mean negative entropy."""

    knob = KnobRule(_lookum_cost, note="steps = budget / (1 + k)")

    config: LookumConfig

    def candidate_sets(self, ctx: StepContext) -> list[Tensor]:
        """k commit masks [b, L]: per row, `budget` slots drawn uniformly from its pool."""
        pool_size = torch.clamp(ctx.budget, min=self.config.pool_size)  # max(|P|, b)
        pool = top_k_mask(ctx.confidence, ctx, k=pool_size)
        candidates = [torch.zeros_like(ctx.eligible) for _ in range(self.config.k)]
        for j, generator in enumerate(ctx.generators):
            slots = pool[j].nonzero().squeeze(1)
            size = int(ctx.budget[j])
            for candidate in candidates:
                pick = torch.randperm(slots.numel(), generator=generator, device=generator.device)[:size]
                candidate[j, slots[pick.to(slots.device)]] = True
        return candidates

    def verify(self, ctx: StepContext, candidate: Tensor) -> Tensor:
        """Score [b] of a candidate: minus the mean masked entropy of one look-ahead forward."""
        lookahead = torch.where(candidate, ctx.x0, ctx.x)
        still_masked = ctx.masked & ~candidate
        logits = lookahead_logits(ctx, lookahead, still_masked)
        slot_logits = forbid(logits[still_masked], ctx.model.forbidden_ids)  # [n, V]: only the slots the score reads
        return -mean_slot_entropy(slot_logits, still_masked)

    def params(self) -> dict:
        """All parameters; `signal` only when it is a control (so the method's rows and cell ids are unchanged)."""
        params = super().params()
        if params["signal"] == "verifier":
            del params["signal"]
        return params

    def degeneracy(self, ctx: StepContext) -> tuple[Tensor, str] | None:
        """With b_t >= |P| every candidate set is the whole pool: confidence's top-b_t."""
        return ctx.budget.to(ctx.eligible.device) >= self.config.pool_size, (
            f"LookUM's pool (pool_size = {self.config.pool_size}) is no larger than the step budget b_t, so every "
            "candidate set is confidence's top-b_t: use more steps or a larger pool_size"
        )

    def select(self, ctx: StepContext) -> StepDecision:
        candidates = self.candidate_sets(ctx)
        if self.config.signal == "random":  # control: no look-ahead forward, equal importance weights
            scores = torch.zeros(ctx.batch, self.config.k, dtype=torch.float64, device=ctx.x.device)
        else:
            scores = torch.stack([self.verify(ctx, c) for c in candidates], dim=1)  # [b, k]
            if self.config.signal == "negated":
                scores = -scores
        weights = torch.softmax(scores.double() / self.config.selection_temperature, dim=1)
        commit = torch.zeros_like(ctx.eligible)
        cumulative = torch.cumsum(weights, dim=1)
        for j, generator in enumerate(ctx.generators):
            u = torch.rand(1, generator=generator, device=generator.device, dtype=torch.float64).to(cumulative.device)
            choice = min(int((cumulative[j] < u).sum()), self.config.k - 1)
            commit[j] = candidates[choice][j]
        return StepDecision(commit=commit)
