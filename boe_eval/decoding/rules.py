"""The rules every sampler's decision obeys (the sampler contract, `boe_eval/samplers/README.md`),
and the confidence fallback for rows whose prediction was numerically unusable."""

from __future__ import annotations

import torch
from torch import Tensor

from boe_eval.decoding.ranking import top_k_mask
from boe_eval.decoding.state import StepContext, StepDecision


def check_decision(name: str, decision: StepDecision, ctx: StepContext) -> None:
    """Only eligible slots are written, at least one while the budget is positive, and only
    generated tokens are remasked."""
    if decision.commit.shape != ctx.eligible.shape:
        raise RuntimeError(f"sampler {name!r} returned a commit mask of shape {tuple(decision.commit.shape)}")
    if (decision.commit & ~ctx.eligible).any():
        raise RuntimeError(f"sampler {name!r} tried to write a slot that is not masked in the current block")
    stalled = (decision.commit.sum(1) == 0) & (ctx.budget > 0)
    if stalled.any():
        raise RuntimeError(f"sampler {name!r} committed nothing although the step budget is positive")
    if decision.remask is not None and (decision.remask & ~(ctx.committed | decision.commit)).any():
        raise RuntimeError(f"sampler {name!r} tried to remask a slot that is not a generated token")


def confidence_for_rows(decision: StepDecision, ctx: StepContext, rows: Tensor) -> tuple[StepDecision, Tensor]:
    """For the rows in `rows` [b] bool, replace the sampler's decision by confidence order (top
    `budget` by p(x0), the proposed tokens, no remasking); each such row counts one fallback."""
    keep = ~rows[:, None]
    commit = torch.where(keep, decision.commit, top_k_mask(ctx.confidence, ctx))
    tokens = None if decision.tokens is None else torch.where(keep, decision.tokens, ctx.x0)
    remask = None if decision.remask is None else decision.remask & keep
    previous = decision.fallbacks if decision.fallbacks is not None else torch.zeros_like(rows, dtype=torch.long)
    counts = torch.where(rows.to(previous.device), torch.ones_like(previous), previous.long())
    return StepDecision(commit=commit, tokens=tokens, remask=remask, fallbacks=counts), counts


__all__ = ["check_decision", "confidence_for_rows"]
