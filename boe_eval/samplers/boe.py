"""Backward-on-Entropy (BoE) steering (TABES paper, sections 3.1-3.7, Algorithm 1, Appendix A.3).

Per decoding step t (Algorithm 1), with the current-step prediction pi_t^i = p_theta^i(. | x_t, t) from the loop:

1. candidate prefilter C_t: the ceil(rho |M_t|) most confident masked slots of the current block (line 4,
   section 4.1; M_t counted inside the block, suppressed EOS/EoT predictions last)  -> `candidate_set`
2. soft writes e~_i = stopgrad(E^T pi_i), delta e_i = e~_i - e_m (eq. 10, 29)      -> `soft_write_delta`
3. one forward of the relaxed state at alpha = 0 (eq. 12: every candidate still at e_m, i.e. x_t's own input
   embeddings, as a leaf with grad), at time t - 1 for time-conditioned denoisers (A.3.1), inside
   ActiveQueryAttention when `aqa` (eq. 30)                                          -> `surrogate_forward`
4. one backward of the surrogate next-step masked entropy (eq. 11) w.r.t. the input embeddings gives
   g_i = grad_{e_i} H~_{t-1}(0; i) for every candidate at once (eq. 13-14)            -> `surrogate_gradient`
5. TIS_i = -<g_i, delta e_i> (eq. 14)                                               -> `token_influence_score`
6. gate c_i = clip(1 - H_i / log|V|, 0, 1), TIS^_i = c_i TIS_i (eq. 15)              -> `confidence_gate`
7. anti-collapse: minus lambda [h_t - H_i]_+^2 (eq. 19) with the floor h_t = h_max t/T (eq. 18,
   "decreasing") or h_max (1 - t/T) (section 4.1, "increasing"); t = T - step counts down from T
   -> `entropy_floor`, `anti_collapse_penalty`
8. commit the top-b_t candidates by score; slots outside C_t are written only when C_t has fewer than b_t
   slots, by confidence (line 9)                                                     -> `commit_by_score`

Choices the paper leaves open, and what is done here (each a config field, recorded in result rows):
- `objective`: the positions whose entropies H~ sums. Eq. 11 with U = C_t sums over M_t \\ C_t ("remaining",
  default); the single-position interpolation of eq. 12 would sum over M_t \\ {i}, which differs per candidate
  and cannot come out of one backward. "masked" sums over all of M_t (eq. 8 at the relaxed state; it adds each
  candidate's own entropy to its score). With "remaining" and C_t = M_t (e.g. rho = 1) the sum is empty: TIS = 0
  and the choice falls to the penalty, then to confidence.
- `active_set`: the active query rows A_t of ActiveQueryAttention. The paper uses A_t = C_t ("candidates",
  section 3.5 and 4.1). With the "remaining" objective that gradient is identically zero: the entropy of a
  non-candidate j reaches another position only through the attention output of query row j, which eq. 30
  detaches when j is not in A_t (every other part of a transformer layer is position-wise). That combination is
  refused. "objective" (default) makes A_t = C_t plus the query rows that predict the objective's positions
  (= M_t): the backward still skips every prompt and already-written row.
- lambda_t is a constant (`anti_collapse_weight`); the paper anneals through the floor h_t only.
- `fuse_forward`: for time-independent denoisers (LLaDA, Dream, BERT) the relaxed state at alpha = 0 is x_t
  itself, so the surrogate forward equals the current-step forward; fused, one forward with grad serves both
  (via `Sampler.current_prediction`). NFE stays 2 per step (paper accounting, A.3.4); `forwards` shows 1.

Controls (docs/samplers/boe_controls.md): `signal` replaces TIS with the same prefilter C_t, budgets and steps.
"tis" (default) is the method; "negated" scores -TIS (then the same gate and penalty: same cost, 2 NFE and one
backward per step); "random" commits b_t slots drawn uniformly from C_t by the row's own generator, with no
surrogate forward, no backward, no gate and no penalty (1 NFE per step). `signal` is left out of `params()` at
its default, so the existing configurations keep their result rows and cell ids.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any
from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.decoding.meter import MeteredDenoiser
from boe_eval.errors import ConfigError
from boe_eval.decoding.prediction import timestep_after
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.models.aqa import AQA_MODES, ActiveQueries, prediction_query_rows
from boe_eval.samplers.cost import KnobRule, StepCost
from boe_eval.samplers.base import Sampler, SamplerConfig, confidence_fallback, register_sampler, top_k_mask

FLOOR_SCHEDULES = ("decreasing", "increasing")
OBJECTIVES = ("remaining", "masked")
ACTIVE_SETS = ("objective", "candidates")
SIGNALS = ("tis", "negated", "random")


@dataclass
class BoEConfig(SamplerConfig):
    #: candidate fraction: C_t = top ceil(rho |M_t|) masked slots by confidence (section 4.1; 1 = all)
    rho: float = 0.25
    #: confidence gating c_i TIS_i (eq. 15); False scores by TIS alone
    gating: bool = True
    #: anti-collapse penalty lambda [h_t - H_i]_+^2 (eq. 18-19)
    anti_collapse: bool = True
    #: lambda_t (constant over steps)
    anti_collapse_weight: float = 0.2
    #: h_max of the entropy floor, in nats
    h_max: float = 0.3
    #: "decreasing": h_t = h_max t/T (eq. 18); "increasing": h_t = h_max (1 - t/T) (section 4.1)
    floor_schedule: str = "decreasing"
    #: ActiveQueryAttention (eq. 30); False = dense backward
    aqa: bool = True
    #: "efficient" (backward for the active rows only) or "faithful" (eq. 30 hooks, same gradients)
    aqa_mode: str = "efficient"
    #: "objective": A_t = C_t + rows predicting the objective's positions; "candidates": A_t = C_t (paper)
    active_set: str = "objective"
    #: entropies summed by H~ (eq. 11): "remaining" = M_t \ C_t, "masked" = M_t
    objective: str = "remaining"
    #: one forward with grad for the current prediction and the surrogate (time-independent denoisers only)
    fuse_forward: bool = False
    #: the score's signal: "tis" (the method), "negated" (-TIS control) or "random" (uniform within C_t control)
    signal: str = "tis"

    def validate(self) -> None:
        if isinstance(self.rho, bool) or not isinstance(self.rho, (int, float)) or not 0 < self.rho <= 1:
            raise ConfigError(f"rho={self.rho!r} is invalid: it must be a number in (0, 1] (1 = all masked slots)")
        for name in ("gating", "anti_collapse", "aqa", "fuse_forward"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid: it must be true or false")
        for name in ("anti_collapse_weight", "h_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name}={value!r} is invalid: it must be a finite number >= 0")
        choices = {
            "floor_schedule": FLOOR_SCHEDULES,
            "aqa_mode": AQA_MODES,
            "active_set": ACTIVE_SETS,
            "objective": OBJECTIVES,
            "signal": SIGNALS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is unknown: choose one of {', '.join(allowed)}")
        if self.aqa and self.active_set == "candidates" and self.objective == "remaining":
            raise ConfigError(
                "active_set='candidates' with objective='remaining' gives TIS = 0 for every candidate (eq. 30 detaches "
                "the only path from the remaining slots' entropies to the candidates): use active_set='objective' "
                "or objective='masked'"
            )
        if self.signal == "random" and self.fuse_forward:
            raise ConfigError(
                "fuse_forward=true with signal='random' has nothing to fuse (the random control makes no surrogate "
                "forward): set fuse_forward=false"
            )


# ----------------------------------------------------------------------------------- the equations


def candidate_set(ctx: StepContext, rho: float) -> Tensor:
    """C_t [b, L]: the ceil(rho |M_t|) most confident masked slots of the current block (Alg. 1 line 4,
    section 4.1), at least one; suppressed EOS/EoT predictions rank last, ties go to the leftmost slot."""
    size = torch.ceil(rho * ctx.eligible.sum(1).double()).long().clamp(min=1)
    return top_k_mask(ctx.confidence, ctx, k=size)


def objective_positions(masked: Tensor, candidates: Tensor, objective: str) -> Tensor:
    """The masked slots whose next-step entropies H~ sums (eq. 11): M_t \\ C_t ("remaining") or M_t ("masked")."""
    return masked & ~candidates if objective == "remaining" else masked.clone()


def soft_write_delta(probs: Tensor, embedding_matrix: Tensor, mask_embedding: Tensor, candidates: Tensor) -> Tensor:
    """delta e_i = stopgrad(E^T pi_i) - e_m at the candidates, 0 elsewhere [b, L, d] (eq. 10, 29)."""
    delta = torch.zeros(*candidates.shape, embedding_matrix.shape[1], dtype=embedding_matrix.dtype,
                        device=embedding_matrix.device)
    index = candidates.nonzero(as_tuple=True)
    with torch.no_grad():
        soft = probs[index].to(embedding_matrix.dtype) @ embedding_matrix
        delta[index] = soft - mask_embedding
    return delta


def masked_entropy(logits: Tensor, positions: Tensor, forbidden_ids: tuple[int, ...] = ()) -> Tensor:
    """sum_{j in positions} H(p_theta^j) per row [b] (eq. 8 / eq. 11), differentiable; forbidden ids get
    probability 0 (a large finite negative logit, so the backward stays finite)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if forbidden_ids:
        blocked = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        blocked[list(forbidden_ids)] = True
        logits = logits.masked_fill(blocked, torch.finfo(logits.dtype).min / 4)
    log_probs = torch.log_softmax(logits, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return (entropy * positions.to(entropy.dtype)).sum(1)


def relaxed_timestep(ctx: StepContext) -> Tensor | None:
    """Diffusion time of the surrogate forward, t - 1 (A.3.1): the fraction of masks left after this step's
    b_t writes; None for time-independent denoisers."""
    masked = ctx.masked.sum(1).clamp(min=1)
    return timestep_after(ctx.timestep, masked, (masked - ctx.budget.to(masked.device)).clamp(min=0))


@dataclass
class SurrogatePass:
    """One forward of the relaxed state at alpha = 0 kept for its backward."""

    rows: Tensor
    inputs: Tensor  #: [b, L, d] leaf input embeddings (requires grad)
    logits: Tensor  #: [b, L, V] with the autograd graph
    active: ActiveQueries | None  #: ActiveQueryAttention rows, filled in before the backward


def surrogate_forward(
    model: MeteredDenoiser,
    rows: Tensor,
    x: Tensor,
    attention_mask: Tensor,
    timestep: Tensor | None,
    aqa_mode: str | None,
    nfe: int = 1,
) -> SurrogatePass:
    """Forward of x~_{t-1} at alpha = 0 (eq. 11-12) with grad w.r.t. its input embeddings: every candidate is
    still the mask embedding, so the inputs are x_t's own embeddings. `aqa_mode` None = dense backward."""
    inputs = model.embed(x).detach().requires_grad_(True)
    context = model.active_queries(ActiveQueries(), mode=aqa_mode) if aqa_mode else contextlib.nullcontext()
    with context as active:
        logits = model.forward(rows, inputs_embeds=inputs, attention_mask=attention_mask, timestep=timestep,
                               grad=True, nfe=nfe)
    return SurrogatePass(rows=rows, inputs=inputs, logits=logits, active=active)


def surrogate_gradient(
    model: MeteredDenoiser, surrogate: SurrogatePass, objective: Tensor, active_rows: Tensor | None
) -> Tensor:
    """g [b, L, d] = grad of H~_{t-1} (eq. 11, summed over `objective`) w.r.t. the input embeddings, one
    backward (eq. 13-14); with ActiveQueryAttention only through the `active_rows` query rows (eq. 30)."""
    if surrogate.active is not None:
        surrogate.active.rows = active_rows
    entropy = masked_entropy(surrogate.logits, objective, model.forbidden_ids).sum()
    return model.grad(surrogate.rows, entropy, surrogate.inputs)


def token_influence_score(gradient: Tensor, delta: Tensor) -> Tensor:
    """TIS_i = -<g_i, delta e_i> [b, L] (eq. 14), accumulated in float64."""
    return -(gradient.double() * delta.double()).sum(-1)


def confidence_gate(entropy: Tensor, vocab_size: int) -> Tensor:
    """c_i = clip(1 - H_i / log|V|, 0, 1) (eq. 15)."""
    return (1 - entropy.double() / math.log(vocab_size)).clamp(0, 1)


def entropy_floor(step: int, total_steps: int, h_max: float, schedule: str) -> float:
    """h_t with t = T - step counting down from T: h_max t/T (eq. 18, "decreasing") or h_max (1 - t/T)
    (section 4.1, "increasing")."""
    fraction = min(max((total_steps - step) / max(total_steps, 1), 0.0), 1.0)
    return h_max * fraction if schedule == "decreasing" else h_max * (1 - fraction)


def anti_collapse_penalty(entropy: Tensor, floor: float, weight: float) -> Tensor:
    """lambda_t [h_t - H_i]_+^2 (eq. 19)."""
    return weight * (floor - entropy.double()).clamp(min=0) ** 2


def commit_by_score(scores: Tensor, candidates: Tensor, ctx: StepContext) -> Tensor:
    """Top-b_t slots [b, L] (Alg. 1 line 9): candidates by score (ties: higher confidence, then leftmost);
    slots outside C_t only when C_t has fewer than b_t slots, by confidence; suppressed EOS/EoT predictions
    rank last within each group."""
    confidence = ctx.confidence.double()
    keys = [
        ctx.eligible.double(),
        candidates.double(),
        (~ctx.suppressed).double(),
        torch.where(candidates, scores.double(), confidence),
        confidence,
    ]
    width = scores.shape[1]
    order = torch.arange(width, device=scores.device).expand_as(scores).contiguous()
    for key in reversed(keys):  # least significant first; stable sorts keep earlier orders on ties
        order = order.gather(1, torch.argsort(key.gather(1, order), dim=1, descending=True, stable=True))
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(width, device=order.device).expand_as(order))
    budget = torch.minimum(ctx.budget.to(ranks.device), ctx.eligible.sum(1))
    return (ranks < budget[:, None]) & ctx.eligible


def random_scores(ctx: StepContext) -> Tensor:
    """Uniform keys in [0, 1) [b, L], one draw per slot from each row's own generator (the random control: the
    top-b_t keys within C_t are a uniformly random b_t-subset of C_t, independent of batch composition)."""
    width = ctx.offset + ctx.x.shape[1]  # one key per canvas column, whatever the step window
    keys = [torch.rand(width, generator=g, device=g.device, dtype=torch.float64)[ctx.offset :] for g in ctx.generators]
    return torch.stack(keys).to(ctx.x.device)


# ----------------------------------------------------------------------------------- the policy


def _boe_cost(params: Mapping[str, Any]) -> StepCost:
    """2 NFE (current + surrogate forward) and one backward per step; `fuse_forward` runs the two NFE
    as one forward with grad (time-independent denoisers), so 1 forward + 1 backward. The random control
    (`signal: random`) makes the current forward only (docs/samplers/boe_controls.md)."""
    if params.get("signal") == "random":
        return StepCost(nfe=1)
    return StepCost(nfe=2, forwards=1 if params.get("fuse_forward") else 2, backwards=1)

@register_sampler("boe", BoEConfig)
class BoESampler(Sampler):
    """Commit the candidates whose soft write most lowers the next-step masked entropy (TIS, eq. 14), gated
    by confidence (eq. 15), minus the anti-collapse penalty (eq. 19)."""

    knob = KnobRule(_boe_cost, note="steps = budget / 2 NFE (current + surrogate forward, one backward)")

    config: BoEConfig
    needs_grad = True

    def start(self, batch_size: int, width: int, device: torch.device) -> None:
        self._fused: SurrogatePass | None = None

    @property
    def _aqa_mode(self) -> str | None:
        return self.config.aqa_mode if self.config.aqa else None

    def __init__(self, config: BoEConfig | None = None) -> None:
        super().__init__(config)
        if self.config.signal == "random":
            self.needs_grad = False  # the random control makes no backward

    def current_prediction(
        self, model: MeteredDenoiser, rows: Tensor, x: Tensor, attention_mask: Tensor, timestep: Tensor | None
    ) -> Tensor | None:
        """Fused mode: one forward with grad serves as the current-step prediction and as the surrogate at
        alpha = 0 (NFE 2: paper accounting counts both). Returns a detached copy for the loop."""
        if not self.config.fuse_forward:
            return None
        if model.time_conditioned:
            raise ConfigError(
                "fuse_forward=true needs a time-independent denoiser: this one is time-conditioned, its surrogate "
                "forward runs at t - 1 (set fuse_forward=false)"
            )
        self._fused = surrogate_forward(model, rows, x, attention_mask, timestep, self._aqa_mode, nfe=2)
        return self._fused.logits.detach().clone()

    def _surrogate(self, ctx: StepContext) -> SurrogatePass:
        fused, self._fused = getattr(self, "_fused", None), None
        if fused is not None:
            if not torch.equal(fused.rows.cpu(), ctx.rows.cpu()):
                raise RuntimeError("BoE fused forward was made for other rows than the step it serves")
            return fused
        return surrogate_forward(ctx.model, ctx.rows, ctx.x, ctx.attention_mask, relaxed_timestep(ctx), self._aqa_mode)

    def active_rows(self, ctx: StepContext, candidates: Tensor, objective: Tensor) -> Tensor:
        """A_t: C_t (paper) or C_t plus the query rows predicting the objective's positions, over the model's own
        positions (the whole canvas: Dream's token at the window's first column is predicted from the prefix)."""
        candidates = ctx.model.canvas_columns(candidates)
        if self.config.active_set == "candidates":
            return candidates
        return candidates | prediction_query_rows(ctx.model, ctx.model.canvas_columns(objective))

    def scores(self, ctx: StepContext, candidates: Tensor) -> dict[str, Tensor]:
        """TIS, gate, penalty and final score [b, L] for the candidates (0 elsewhere); `tis` is TIS itself, also
        under the negated control (whose score uses -TIS)."""
        cfg = self.config
        objective = objective_positions(ctx.masked, candidates, cfg.objective)
        surrogate = self._surrogate(ctx)
        gradient = surrogate_gradient(ctx.model, surrogate, objective, self.active_rows(ctx, candidates, objective))
        mask_embedding = ctx.model.embed(torch.full((1, 1), ctx.model.mask_id, device=ctx.x.device))[0, 0].detach()
        delta = soft_write_delta(ctx.probs, ctx.model.embedding_matrix.detach(), mask_embedding, candidates)
        tis = token_influence_score(gradient, delta) * candidates
        signal = -tis if cfg.signal == "negated" else tis  # the negated control flips TIS's sign, nothing else
        gate = confidence_gate(ctx.entropy, ctx.logits.shape[-1])
        score = gate * signal if cfg.gating else signal.clone()
        floor = entropy_floor(ctx.step, ctx.total_steps, cfg.h_max, cfg.floor_schedule)
        penalty = anti_collapse_penalty(ctx.entropy, floor, cfg.anti_collapse_weight) * candidates
        if cfg.anti_collapse:
            score = score - penalty
        return {"tis": tis, "gate": gate, "penalty": penalty, "score": score, "delta": delta, "gradient": gradient}

    def params(self) -> dict:
        """All parameters; `signal` only when it is a control (so the method's rows and cell ids are unchanged)."""
        params = super().params()
        if params["signal"] == "tis":
            del params["signal"]
        return params

    def degeneracy(self, ctx: StepContext) -> tuple[Tensor, str] | None:
        """With b_t >= |C_t| = ceil(rho |M_t|) every slot of C_t is written: confidence's top slots."""
        pool = torch.ceil(self.config.rho * ctx.eligible.sum(1).double()).long().clamp(min=1)
        return ctx.budget.to(ctx.eligible.device) >= pool, (
            f"BoE's candidate set C_t = ceil(rho |M_t|) (rho = {self.config.rho:g}) is no larger than the step budget "
            "b_t, so it commits confidence's top slots: use more steps per token or a larger rho"
        )

    def select(self, ctx: StepContext) -> StepDecision:
        candidates = candidate_set(ctx, self.config.rho)
        if self.config.signal == "random":
            return StepDecision(commit=commit_by_score(random_scores(ctx), candidates, ctx))
        score, fallbacks = confidence_fallback(self.scores(ctx, candidates)["score"], ctx)
        return StepDecision(commit=commit_by_score(score, candidates, ctx), fallbacks=fallbacks)


__all__ = [
    "ACTIVE_SETS",
    "BoEConfig",
    "BoESampler",
    "FLOOR_SCHEDULES",
    "OBJECTIVES",
    "SIGNALS",
    "SurrogatePass",
    "anti_collapse_penalty",
    "candidate_set",
    "commit_by_score",
    "confidence_gate",
    "entropy_floor",
    "masked_entropy",
    "objective_positions",
    "random_scores",
    "relaxed_timestep",
    "soft_write_delta",
    "surrogate_forward",
    "surrogate_gradient",
    "token_influence_score",
]
