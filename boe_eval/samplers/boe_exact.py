"""Exact-objective references for BoE (TABES eq. 10-12, 15-19, Theorem 3.1; docs/samplers/boe_exact.md).

BoE ranks the candidates C_t by TIS_i = -<g_i, delta e_i> (eq. 14), the first-order estimate of how much writing
candidate i lowers the surrogate next-step masked entropy H~_{t-1} (eq. 11). This policy measures that drop
exactly, by one metered forward per candidate:

    dH~(i) = H~_{t-1}(x_t) - H~_{t-1}(x_t with slot i written)

- `write: relaxed`: slot i's input embedding e_m is replaced by the soft write e~_i = E^T pi_i (eq. 10), i.e. the
  relaxed state of eq. 12 at alpha = 1, every other candidate still at e_m (eq. 16's dH~, Theorem 3.1);
- `write: hard`: slot i holds the proposed token x0_i (what the step would actually commit).

Everything else is BoE's: the prefilter C_t (`rho`, Alg. 1 line 4), the entropies summed (`objective`: M_t \\ C_t
or M_t, the same positions for every candidate), the time t - 1 of time-conditioned denoisers (A.3.1), the gate
c_i (eq. 15, `gating`), the anti-collapse penalty (eq. 18-19, `anti_collapse`) and the commit rule (Alg. 1 line 9):
score_i = c_i dH~(i) - lambda [h_t - H_i]_+^2, top-b_t of C_t. A table of boe vs boe_exact_* at the same steps and
prefilter therefore separates the objective's value from TIS's estimation error. ActiveQueryAttention and
`fuse_forward` concern the backward and have no counterpart here.

Compute per step (measured by the meter, no backward): the current forward, one forward per candidate and, on a
time-conditioned denoiser, one forward of x_t at t - 1 for H~_{t-1}(x_t) (a time-independent denoiser's current
forward is that state already): NFE = forwards = 1 + |C_t| (2 + |C_t|). The candidate forwards of a step are
batched across rows (k-th candidate of every row that has one), each row counted once per forward it takes part in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.errors import ConfigError
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import KnobRule, VaryingStepCost
from boe_eval.samplers.base import Sampler, SamplerConfig, confidence_fallback, register_sampler
from boe_eval.samplers.boe import (
    BoEConfig,
    anti_collapse_penalty,
    candidate_set,
    commit_by_score,
    confidence_gate,
    entropy_floor,
    masked_entropy,
    objective_positions,
    relaxed_timestep,
    soft_write_delta,
)

WRITES = ("relaxed", "hard")


@dataclass
class BoEExactConfig(SamplerConfig):
    #: "relaxed": soft write e~_i = E^T pi_i at alpha = 1 (eq. 10, 12); "hard": the proposed token x0_i
    write: str = "relaxed"
    #: candidate fraction: C_t = top ceil(rho |M_t|) masked slots by confidence (as BoE, section 4.1)
    rho: float = 0.25
    #: confidence gating c_i dH~(i) (eq. 15)
    gating: bool = True
    #: anti-collapse penalty lambda [h_t - H_i]_+^2 (eq. 18-19)
    anti_collapse: bool = True
    anti_collapse_weight: float = 0.2
    h_max: float = 0.3
    floor_schedule: str = "decreasing"
    #: entropies summed by H~ (eq. 11): "remaining" = M_t \ C_t, "masked" = M_t
    objective: str = "remaining"

    def validate(self) -> None:
        if self.write not in WRITES:
            raise ConfigError(f"write={self.write!r} is unknown: choose one of {', '.join(WRITES)}")
        shared = {name: getattr(self, name) for name in ("rho", "gating", "anti_collapse", "anti_collapse_weight",
                                                          "h_max", "floor_schedule", "objective")}
        BoEConfig(**shared, aqa=False).validate()  # the same checks and messages as BoE's fields


def exact_entropy_drop(ctx: StepContext, candidates: Tensor, objective: Tensor, write: str) -> Tensor:
    """dH~(i) [b, L] float64 at the candidates (0 elsewhere): H~_{t-1} (eq. 11, summed over `objective`) of x_t minus
    that of x_t with slot i written (`write`), one metered forward per candidate."""
    model = ctx.model
    forbidden = model.forbidden_ids
    timestep = relaxed_timestep(ctx)
    if timestep is None:  # time-independent: the current forward is the state x_t itself
        before = masked_entropy(ctx.logits, objective, forbidden)
    else:
        before = masked_entropy(
            model.forward(ctx.rows, ctx.x, attention_mask=ctx.attention_mask, timestep=timestep), objective, forbidden
        )
    drop = torch.zeros(candidates.shape, dtype=torch.float64, device=candidates.device)
    if write == "relaxed":
        mask_embedding = model.embed(torch.full((1, 1), model.mask_id, device=ctx.x.device))[0, 0]
        delta = soft_write_delta(ctx.probs, model.embedding_matrix, mask_embedding, candidates)
        base = model.embed(ctx.x)
    slots = [candidates[j].nonzero().squeeze(1) for j in range(ctx.batch)]
    counts = torch.tensor([s.numel() for s in slots])
    for k in range(int(counts.max()) if len(slots) else 0):
        sub = (counts > k).nonzero().squeeze(1).to(ctx.x.device)
        slot = torch.stack([slots[j][k] for j in sub.tolist()])
        n = torch.arange(sub.numel(), device=ctx.x.device)
        time_k = None if timestep is None else timestep[sub]
        if write == "relaxed":
            inputs = base[sub].clone()
            inputs[n, slot] = base[sub, slot] + delta[sub, slot]  # e_m -> e~_i (eq. 12 at alpha = 1)
            logits = model.forward(ctx.rows[sub], inputs_embeds=inputs, attention_mask=ctx.attention_mask[sub],
                                   timestep=time_k)
        else:
            ids = ctx.x[sub].clone()
            ids[n, slot] = ctx.x0[sub, slot]
            logits = model.forward(ctx.rows[sub], ids, attention_mask=ctx.attention_mask[sub], timestep=time_k)
        after = masked_entropy(logits, objective[sub], forbidden)
        drop[sub, slot] = (before[sub] - after).double()
    return drop


@register_sampler("boe_exact", BoEExactConfig)
class BoEExactSampler(Sampler):
    """BoE with TIS replaced by the exact drop dH~(i) of its surrogate objective (one forward per candidate)."""

    knob = KnobRule(lambda p: VaryingStepCost(nfe=float("nan"), sampler="boe_exact",
                                           what="1 + |C_t| NFE (2 + |C_t| time-conditioned), no backward"),
                     note="exact-objective reference (docs/samplers/boe_exact.md): budget_axis steps only")

    config: BoEExactConfig

    def scores(self, ctx: StepContext, candidates: Tensor) -> dict[str, Tensor]:
        """Exact drop, gate, penalty and final score [b, L] for the candidates (0 elsewhere)."""
        cfg = self.config
        objective = objective_positions(ctx.masked, candidates, cfg.objective)
        drop = exact_entropy_drop(ctx, candidates, objective, cfg.write) * candidates
        gate = confidence_gate(ctx.entropy, ctx.logits.shape[-1])
        score = gate * drop if cfg.gating else drop.clone()
        floor = entropy_floor(ctx.step, ctx.total_steps, cfg.h_max, cfg.floor_schedule)
        penalty = anti_collapse_penalty(ctx.entropy, floor, cfg.anti_collapse_weight) * candidates
        if cfg.anti_collapse:
            score = score - penalty
        return {"drop": drop, "gate": gate, "penalty": penalty, "score": score}

    def select(self, ctx: StepContext) -> StepDecision:
        candidates = candidate_set(ctx, self.config.rho)
        score, fallbacks = confidence_fallback(self.scores(ctx, candidates)["score"], ctx)
        return StepDecision(commit=commit_by_score(score, candidates, ctx), fallbacks=fallbacks)


__all__ = ["BoEExactConfig", "BoEExactSampler", "WRITES", "exact_entropy_drop"]
