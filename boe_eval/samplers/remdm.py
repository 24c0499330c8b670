"""ReMDM, remasking discrete diffusion (Wang, Schiff, Sahoo, Kuleshov, arXiv 2503.00307; docs/references.md §5).

Two of the three "ReMDM"s in circulation, each under its own name so every result row names it:

`remdm_llada`, the official ReMDM-LLaDA loop (`guanghanwang/ReMDM-LLaDA:eval_llada.py::llada_remdm_sample`).
A block of S planned steps runs 2S iterations. With r = floor(7/8 * S): iterations i < r and
i >= r + S are normal steps (commit the top-`budget` masked slots by confidence, uniform schedule);
iterations r <= i < r + S are remask steps: first the `remask_count` tokens of this block with the
lowest cached confidence (p of the token when it was committed) are masked again, then the
`remask_count` most confident masked slots are committed. NFE = 2 x steps. Tokens are sampled at
temperature 1 (Gumbel-max over p in float64) as in the reference, whatever the run's temperature,
unless `token_temperature` says otherwise (null = the run's tokens). Choices, documented:
- the remask window starts at 7/8 of the block's *steps*; the reference writes `block_size / 8 * 7`,
  which is the same in its published setting (steps = gen_length, one token per step) but with
  several tokens per step fills the block before remasking starts and then "commits" unmasked
  slots, writing -inf into the cache;
- the remask before iteration i happens at the end of iteration i - 1 (`StepDecision.remask`): same
  canvas, same forwards;
- the reference's early exit after a block whose sequence holds an EOS (prompt included) is not a
  sampler option: a sampler cannot skip the next block's forward. The loop's `early_stop=true`
  (stop once EOS is decoded with every slot before it unmasked) is the harness's equivalent.

`remdm_cap`, `remdm_rescale`, `remdm_loop`: the MDLM sigma-schedules of the original ReMDM
(`kuleshov-group/remdm:diffusion.py::_ddpm_caching_update`), for time-conditioned MDLM-style
denoisers. Log-linear schedule alpha_t = 1 - t, t from 1 down to eps = 1e-5 in S steps per block,
s = t - (1 - eps)/S. At a step t -> s with remasking probability sigma:
    masked slot:   unmask with probability (alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t), the token
                   drawn from the nucleus (top-p) distribution of p_x0; else stay masked;
    written slot of the current block: mask again with probability sigma.
    cap:     sigma = min(eta, (1 - alpha_s) / alpha_t)
    rescale: sigma = eta * min(1, (1 - alpha_s) / alpha_t)
    loop:    t > t_on: MDLM (sigma = 0) on the schedule 1 - (1 - t) alpha_on / (1 - t_on);
             t <= t_off: MDLM on the schedule t (1 - alpha_on) / t_off;
             between: alpha held at alpha_on, sigma = eta (remask-and-resample loop).
All S steps run even once no slot is masked (written slots can still be remasked), as in the
reference; slots still masked after them are filled by one argmax forward (the reference's "noise
removal", which the reference runs even when nothing is masked), so NFE = S per block, plus one
when masks remain. Randomness comes from each row's
generator in this order per step: tokens, unmask draws (one per masked slot), remask draws (one per
written slot of the block). The model receives the loop's timestep (masked fraction of the
generation), not the schedule's t.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.errors import ConfigError
from boe_eval.decoding.prediction import gumbel_max_tokens
from boe_eval.decoding.schedule import uniform_budgets
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import KnobRule, StepCost
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler, top_k_mask


def sample_eligible_tokens(
    ctx: StepContext, log_weights: Callable[[Tensor], Tensor], fallback: Tensor
) -> Tensor:
    """Tokens [b, L]: at the eligible slots of each row a Gumbel-max sample of
    `log_weights(probabilities [n, V] of those slots)` (fp64 Gumbel, the loop's `gumbel_max_tokens`), drawn from
    the row's own generator; `fallback` elsewhere. Only the eligible slots' distributions are transformed."""
    return gumbel_max_tokens(lambda j, idx: log_weights(ctx.probs[j, idx]), ctx.eligible, ctx.generators, fallback)


def block_slots(ctx: StepContext) -> Tensor:
    """[b, L] bool, the slots of the current block."""
    positions = torch.arange(ctx.x.shape[1], device=ctx.x.device)[None, :]
    return (positions >= ctx.block_start[:, None]) & (positions < ctx.block_end[:, None])


def lowest_k_mask(values: Tensor, candidates: Tensor, k: int) -> Tensor:
    """[b, L] bool, the k candidates with the lowest values per row (ties to the left)."""
    key = values.double().masked_fill(~candidates, float("inf"))
    order = torch.argsort(key, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (ranks < k) & candidates


# --------------------------------------------------------------------------------- ReMDM-LLaDA
@dataclass
class RemdmLladaConfig(SamplerConfig):
    #: tokens remasked (and recommitted) per remask step: `remdm_number` (1 for countdown, 4 for TruthfulQA)
    remask_count: int = 1
    #: remasking starts after this fraction of the block's steps (reference: 7/8)
    remask_start_fraction: float = 0.875
    #: tokens are Gumbel-max samples at this temperature (reference: 1); null = the run's tokens
    token_temperature: float | None = 1.0

    def validate(self) -> None:
        if not isinstance(self.remask_count, int) or isinstance(self.remask_count, bool) or self.remask_count < 1:
            raise ConfigError(f"remask_count={self.remask_count!r} is invalid: it must be a positive integer")
        if not 0 <= self.remask_start_fraction <= 1:
            raise ConfigError(f"remask_start_fraction={self.remask_start_fraction!r} is invalid: it must be in [0, 1]")
        if self.token_temperature is not None and not (
            math.isfinite(self.token_temperature) and self.token_temperature >= 0
        ):
            raise ConfigError(
                f"token_temperature={self.token_temperature!r} is invalid: "
                "it must be >= 0 (or null for the run's temperature)"
            )


@register_sampler("remdm_llada", RemdmLladaConfig)
class RemdmLladaSampler(Sampler):
    """ReMDM-LLaDA: confidence order, then S remask-and-recommit iterations from 7/8 of each block."""

    knob = KnobRule(lambda p: StepCost(2), note="steps = budget / 2 (an unmask and a remask call per step)")

    config: RemdmLladaConfig

    def remask_start(self, steps_per_block: int) -> int:
        return int(math.floor(self.config.remask_start_fraction * steps_per_block))

    def start(self, batch_size: int, width: int, device: torch.device) -> None:
        #: confidence of each written token when it was committed (the reference's `conf_cache`)
        self._commit_confidence = torch.full((batch_size, width), float("inf"), dtype=torch.float64, device=device)

    def block_budgets(self, n_masked: Tensor, steps_per_block: int) -> Tensor:
        base = uniform_budgets(n_masked, steps_per_block)
        start = self.remask_start(steps_per_block)
        window = torch.full_like(base, self.config.remask_count)
        return torch.cat([base[:, :start], window, base[:, start:]], dim=1)

    def in_remask_window(self, iteration: int, steps_per_block: int) -> bool:
        start = self.remask_start(steps_per_block)
        return start <= iteration < start + steps_per_block

    def propose_tokens(self, ctx: StepContext) -> Tensor:
        """Gumbel-max samples at `token_temperature` over p in float64 (the reference's temperature 1), whatever
        the run's temperature; null: the loop's proposal."""
        temperature = self.config.token_temperature
        if temperature is None:
            return ctx.x0
        if temperature == 0:
            return ctx.logits.argmax(-1)
        return sample_eligible_tokens(ctx, lambda p: torch.log(p.double()) / temperature, ctx.logits.argmax(-1))

    def select(self, ctx: StepContext) -> StepDecision:
        tokens = ctx.proposal
        confidence = ctx.probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        commit = top_k_mask(confidence, ctx)
        cache = self._commit_confidence[ctx.rows]
        cache = torch.where(commit, confidence.double(), cache)
        remask = None
        if self.in_remask_window(ctx.block_step + 1, ctx.steps_per_block):
            written = (ctx.committed | commit) & block_slots(ctx)
            remask = lowest_k_mask(cache, written, self.config.remask_count)
            cache = cache.masked_fill(remask, float("inf"))
        self._commit_confidence[ctx.rows] = cache
        return StepDecision(commit=commit, tokens=tokens, remask=remask)


# --------------------------------------------------------------------------------- MDLM sigma-schedules
@dataclass
class MdlmScheduleConfig(SamplerConfig):
    """What every MDLM-schedule sampler (ReMDM's, FB, DFM) shares."""

    #: nucleus (top-p) mass of the token distribution (reference scripts: 0.9)
    nucleus_p: float = 0.9
    #: eps, the last time of the schedule (reference: 1e-5)
    min_time: float = 1e-5

    def validate(self) -> None:
        if not 0 < self.nucleus_p <= 1:
            raise ConfigError(f"nucleus_p={self.nucleus_p!r} is invalid: it must be in (0, 1]")
        if not 0 < self.min_time < 1:
            raise ConfigError(f"min_time={self.min_time!r} is invalid: it must be in (0, 1)")


@dataclass
class RemdmScheduleConfig(MdlmScheduleConfig):
    #: eta, the remasking strength
    eta: float = 0.0

    def validate(self) -> None:
        if not 0 <= self.eta <= 1:
            raise ConfigError(f"eta={self.eta!r} is invalid: it must be in [0, 1]")
        super().validate()


@dataclass
class RemdmCapConfig(RemdmScheduleConfig):
    eta: float = 0.008  #: `scripts/remdm-cap.sh`


@dataclass
class RemdmRescaleConfig(RemdmScheduleConfig):
    eta: float = 0.015  #: `scripts/remdm-rescale.sh`


@dataclass
class RemdmLoopConfig(RemdmScheduleConfig):
    eta: float = 0.02  #: `scripts/remdm-loop.sh`
    t_on: float = 0.55  #: the loop phase starts when t reaches t_on
    t_off: float = 0.05  #: and ends at t_off
    alpha_on: float = 0.9  #: alpha held during the loop phase

    def validate(self) -> None:
        super().validate()
        if not 0 < self.t_off < self.t_on < 1:
            raise ConfigError(f"t_on={self.t_on!r}, t_off={self.t_off!r} are invalid: they need 0 < t_off < t_on < 1")
        if not 0 < self.alpha_on < 1:
            raise ConfigError(f"alpha_on={self.alpha_on!r} is invalid: it must be in (0, 1)")
        if self.eta * self.alpha_on > 1 - self.alpha_on:
            raise ConfigError(
                f"eta={self.eta!r} is invalid with alpha_on={self.alpha_on!r}: the loop's unmask probability "
                "eta * alpha_on / (1 - alpha_on) must be <= 1"
            )


def sigma_max(alpha_t: float, alpha_s: float) -> float:
    """min(1, (1 - alpha_s) / alpha_t), the largest sigma keeping the MDLM marginals (ReMDM eq. 7)."""
    return min(1.0, (1 - alpha_s) / alpha_t) if alpha_t > 0 else 1.0


def remdm_transition(alpha_t: float, alpha_s: float, sigma: float) -> tuple[float, float]:
    """(unmask probability of a masked slot, remask probability of a written slot) for t -> s."""
    if alpha_t >= 1:
        return 0.0, sigma
    return (alpha_s - (1 - sigma) * alpha_t) / (1 - alpha_t), sigma


def mdlm_transition(move_t: float, move_s: float) -> tuple[float, float]:
    """MDLM ancestral step with masking probabilities move_t -> move_s: unmask (t - s) / t, no remask."""
    return ((move_t - move_s) / move_t if move_t > 0 else 1.0), 0.0


def nucleus_log_probs(probs: Tensor, top_p: float) -> Tensor:
    """log of p renormalised on its nucleus: the tokens whose cumulative mass (sorted, inclusive) is
    <= top_p, the most likely token always kept (the reference's top-p); -inf elsewhere."""
    if top_p >= 1:
        return torch.log(probs.double())
    sorted_probs, order = torch.sort(probs.double(), dim=-1, descending=True)
    keep = torch.cumsum(sorted_probs, dim=-1) <= top_p
    keep[..., 0] = True
    kept = sorted_probs * keep
    kept = kept / kept.sum(-1, keepdim=True)
    return torch.log(torch.zeros_like(kept).scatter_(-1, order, kept))


class RemdmScheduleSampler(Sampler):
    """A ReMDM sigma-schedule on a time-conditioned (MDLM-style) denoiser."""

    knob = KnobRule(lambda p: StepCost(1), final_call=True, note="steps = budget (+1 argmax call if masks remain)")

    config: MdlmScheduleConfig
    runs_all_planned_steps = True  # written slots may be remasked at any of the S steps, as in the reference
    needs_time_conditioning = True

    def transition(self, t: float, s: float) -> tuple[float, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def iterations(self, steps_per_block: int) -> int:
        """Schedule steps run per block for `steps_per_block` planned steps (the same here; DFM runs more)."""
        return steps_per_block

    def block_budgets(self, n_masked: Tensor, steps_per_block: int) -> Tensor:
        # no fixed count: each step unmasks a random number of slots (possibly none)
        width = self.iterations(steps_per_block)
        return torch.zeros((n_masked.shape[0], width), dtype=torch.long, device=n_masked.device)

    def times(self, step: int, steps: int) -> tuple[float, float]:
        dt = (1 - self.config.min_time) / steps
        t = 1 - step * dt
        return t, t - dt

    def propose_tokens(self, ctx: StepContext) -> Tensor:
        """Tokens from the nucleus (top-p) distribution of p_x0 at the eligible slots, the canvas elsewhere; the
        final "noise removal" step writes the argmax."""
        if ctx.block_step >= self.iterations(ctx.steps_per_block):
            return ctx.logits.argmax(-1)
        return sample_eligible_tokens(ctx, lambda p: nucleus_log_probs(p, self.config.nucleus_p), ctx.x)

    def select(self, ctx: StepContext) -> StepDecision:
        if not ctx.model.time_conditioned:
            raise ConfigError(
                f"sampler {self.name!r} needs a time-conditioned (MDLM-style) denoiser and "
                f"{ctx.model.name!r} is not one: use remdm_llada for LLaDA-style models"
            )
        if ctx.block_step >= self.iterations(ctx.steps_per_block):  # the reference's final argmax "noise removal"
            return StepDecision(commit=ctx.eligible.clone(), tokens=ctx.proposal)
        t, s = self.times(ctx.block_step, ctx.steps_per_block)
        unmask_probability, remask_probability = self.transition(t, s)
        tokens = ctx.proposal
        written = ctx.committed & block_slots(ctx)
        commit = torch.zeros_like(ctx.eligible)
        remask = torch.zeros_like(ctx.eligible)
        for j, generator in enumerate(ctx.generators):
            draws = ((commit, ctx.eligible, unmask_probability), (remask, written, remask_probability))
            for chosen, slots, probability in draws:
                idx = slots[j].nonzero().squeeze(1)
                if idx.numel():
                    u = torch.rand(idx.numel(), generator=generator, device=generator.device, dtype=torch.float64)
                    chosen[j, idx] = u.to(chosen.device) < probability
        return StepDecision(commit=commit, tokens=tokens, remask=remask)


@register_sampler("remdm_cap", RemdmCapConfig)
class RemdmCapSampler(RemdmScheduleSampler):
    """ReMDM-cap: sigma_t = min(eta, (1 - alpha_s) / alpha_t)."""

    def transition(self, t: float, s: float) -> tuple[float, float]:
        alpha_t, alpha_s = 1 - t, 1 - s
        sigma = min(self.config.eta, (1 - alpha_s) / alpha_t) if alpha_t > 0 else self.config.eta
        return remdm_transition(alpha_t, alpha_s, sigma)


@register_sampler("remdm_rescale", RemdmRescaleConfig)
class RemdmRescaleSampler(RemdmScheduleSampler):
    """ReMDM-rescale: sigma_t = eta * sigma_max."""

    def transition(self, t: float, s: float) -> tuple[float, float]:
        alpha_t, alpha_s = 1 - t, 1 - s
        return remdm_transition(alpha_t, alpha_s, self.config.eta * sigma_max(alpha_t, alpha_s))


@register_sampler("remdm_loop", RemdmLoopConfig)
class RemdmLoopSampler(RemdmScheduleSampler):
    """ReMDM-loop: MDLM down to alpha_on, a constant-alpha remasking loop, then MDLM to the end."""

    config: RemdmLoopConfig

    def transition(self, t: float, s: float) -> tuple[float, float]:
        c = self.config
        if t > c.t_on:
            return mdlm_transition(1 - (1 - t) * c.alpha_on / (1 - c.t_on), 1 - (1 - s) * c.alpha_on / (1 - c.t_on))
        if t <= c.t_off:
            return mdlm_transition(t * (1 - c.alpha_on) / c.t_off, s * (1 - c.alpha_on) / c.t_off)
        return c.eta * c.alpha_on / (1 - c.alpha_on), c.eta
