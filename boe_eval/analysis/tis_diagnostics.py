"""Does TIS rank candidates like the true relaxed entropy drop? (TABES paper Theorem 3.1, Corollary 3.2.)

At a decoding step, the relaxed one-step entropy reduction of candidate i (eq. 16)

    dH~(i) = H~_{t-1}(0; i) - H~_{t-1}(1; i)

is computed exactly by one forward per candidate, its input embedding moved from e_m to the soft write
e~_i (eq. 12 at alpha = 1, every other candidate still at e_m), with the same entropy sum and time as the
sampler's surrogate (eq. 11). Theorem 3.1 says dH~(i) = TIS_i + eps_i with |eps_i| <= M/2, so TIS should rank
the candidates like dH~ (Corollary 3.2); the Spearman rank correlation per step measures how well it does,
for the dense gradient and for the ActiveQueryAttention approximations alike. These forwards go through a
meter of their own: the decode's compute counts stay those of BoE.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from boe_eval.decoding.meter import Meter
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.base import confidence_fallback
from boe_eval.samplers.boe import (
    BoESampler,
    candidate_set,
    commit_by_score,
    masked_entropy,
    objective_positions,
    relaxed_timestep,
)


def relaxed_entropy_drop(
    ctx: StepContext, candidates: Tensor, delta: Tensor, objective: Tensor, chunk: int = 64
) -> tuple[Tensor, Meter]:
    """dH~(i) [b, L] at the candidates (0 elsewhere), by one forward per candidate (batched by `chunk`);
    returns it with the meter that counted those forwards (one count per sequence forwarded).
    With `delta` = E[x0_i] - e_m (a one-hot write of the proposed token) it is the drop of a real, hard write
    (`hard_write_delta`)."""
    meter = Meter(chunk)
    model = ctx.model.with_meter(meter)
    timestep = relaxed_timestep(ctx)
    forbidden = model.forbidden_ids
    drop = torch.zeros(candidates.shape, dtype=torch.float64, device=candidates.device)
    with torch.no_grad():
        base = model.embed(ctx.x)
        for j in range(ctx.batch):
            attention = ctx.attention_mask[j : j + 1]
            time_j = None if timestep is None else timestep[j : j + 1]
            before = masked_entropy(
                model.forward([0], inputs_embeds=base[j : j + 1], attention_mask=attention, timestep=time_j,
                              canvas_rows=ctx.rows[j : j + 1]),
                objective[j : j + 1], forbidden,
            )
            slots = candidates[j].nonzero().squeeze(1)
            for start in range(0, slots.numel(), chunk):
                part = slots[start : start + chunk]
                n = part.numel()
                moved = base[j : j + 1].repeat(n, 1, 1)
                moved[torch.arange(n), part] = base[j, part] + delta[j, part]
                logits = model.forward(
                    list(range(n)), inputs_embeds=moved, attention_mask=attention.expand(n, -1),
                    timestep=None if time_j is None else time_j.expand(n), canvas_rows=ctx.rows[j : j + 1].expand(n),
                )
                after = masked_entropy(logits, objective[j : j + 1].expand(n, -1), forbidden)
                drop[j, part] = (before - after).double()
    return drop, meter


def hard_write_delta(ctx: StepContext, candidates: Tensor) -> Tensor:
    """E[x0_i] - e_m at the candidates, 0 elsewhere [b, L, d]: moving slot i by it writes the proposed token x0_i
    for real, so `relaxed_entropy_drop` then gives the exact one-step future entropy drop of a hard write."""
    with torch.no_grad():
        written = ctx.model.embed(ctx.x0)
        mask = ctx.model.embed(torch.full_like(ctx.x0, ctx.model.mask_id))
    return (written - mask) * candidates.unsqueeze(-1).to(written.dtype)


class TISDiagnosticSampler(BoESampler):
    """BoE that also measures dH~(i) for every candidate of every step, into `records` (analysis only: it is
    not registered as a sampler; its decisions are BoE's). With `hard_writes`, also the exact entropy drop of
    writing x0_i for real (`hard_drop`), on an oracle the true one-step future entropy drop."""

    hard_writes: bool = False

    def start(self, batch_size: int, width: int, device: torch.device) -> None:
        super().start(batch_size, width, device)
        self.call = getattr(self, "call", -1) + 1
        if self.call == 0:
            self.records: list[dict] = []
            self.diagnostic_forwards = 0

    def select(self, ctx: StepContext) -> StepDecision:
        candidates = candidate_set(ctx, self.config.rho)
        parts = self.scores(ctx, candidates)
        objective = objective_positions(ctx.masked, candidates, self.config.objective)
        drop, meter = relaxed_entropy_drop(ctx, candidates, parts["delta"], objective)
        self.diagnostic_forwards += int(meter.forwards.sum())
        hard = None
        if self.hard_writes:
            hard, meter = relaxed_entropy_drop(ctx, candidates, hard_write_delta(ctx, candidates), objective)
            self.diagnostic_forwards += int(meter.forwards.sum())
        score, fallbacks = confidence_fallback(parts["score"], ctx)
        commit = commit_by_score(score, candidates, ctx)
        for j, i in candidates.nonzero().tolist():
            self.records.append(
                {
                    "call": self.call,
                    "row": int(ctx.rows[j]),
                    "step": ctx.step,
                    "position": i - int(ctx.gen_start[j]),
                    "candidates": int(candidates[j].sum()),
                    "tis": float(parts["tis"][j, i]),
                    "gated_tis": float(parts["gate"][j, i] * parts["tis"][j, i]),
                    "score": float(parts["score"][j, i]),
                    "true_drop": float(drop[j, i]),
                    "confidence": float(ctx.confidence[j, i]),
                    "entropy": float(ctx.entropy[j, i]),
                    "committed": bool(commit[j, i]),
                    **({"hard_drop": float(hard[j, i])} if hard is not None else {}),
                }
            )
        return StepDecision(commit=commit, fallbacks=fallbacks)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records)


def step_correlations(
    frame: pd.DataFrame, score: str = "tis", min_candidates: int = 3, target: str = "true_drop"
) -> pd.DataFrame:
    """Per step (call, row, step) with at least `min_candidates`: Spearman rho between `score` and `target` (the
    true relaxed drop, or `hard_drop`), whether both pick the same best candidate, and the mean first-order
    remainder |target - TIS| (eq. 16)."""
    rows = []
    for key, group in frame.groupby(["call", "row", "step"]):
        if len(group) < min_candidates:
            continue
        rows.append(
            {
                "call": key[0],
                "row": key[1],
                "step": key[2],
                "candidates": len(group),
                "spearman": group[score].corr(group[target], method="spearman"),
                "same_best": int(group[score].idxmax() == group[target].idxmax()),
                "remainder": float((group[target] - group["tis"]).abs().mean()),
            }
        )
    return pd.DataFrame(rows)


def summarize(frame: pd.DataFrame, score: str = "tis", min_candidates: int = 3, target: str = "true_drop") -> dict:
    """Mean and median per-step Spearman, pooled Spearman over all candidates, best-candidate agreement."""
    steps = step_correlations(frame, score, min_candidates, target)
    return {
        "steps": len(steps),
        "ranked_steps": int(steps["spearman"].notna().sum()) if len(steps) else 0,  # both sides non-constant
        "candidates": len(frame),
        "mean_step_spearman": float(steps["spearman"].mean()) if len(steps) else float("nan"),
        "median_step_spearman": float(steps["spearman"].median()) if len(steps) else float("nan"),
        "pooled_spearman": float(frame[score].corr(frame[target], method="spearman")),
        "same_best_fraction": float(steps["same_best"].mean()) if len(steps) else float("nan"),
        "mean_abs_remainder": float((frame[target] - frame["tis"]).abs().mean()),
        "mean_abs_true_drop": float(frame[target].abs().mean()),
    }


__all__ = ["TISDiagnosticSampler", "hard_write_delta", "relaxed_entropy_drop", "step_correlations", "summarize"]
