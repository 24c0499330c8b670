"""Ranking primitives shared by the loop, the decision diagnostics and the samplers.

`top_k_mask` is the commit rule of every top-k policy (LLaDA `generate.py`, docs/references.md §1):
the k highest-scoring eligible slots of each row, suppressed ids last, ties to the leftmost slot.
"""

from __future__ import annotations

import torch
from torch import Tensor

from boe_eval.decoding.state import StepContext


def top_k_mask(scores: Tensor, ctx: StepContext, k: Tensor | None = None) -> Tensor:
    """Commit mask [b, L] of the `k` (default `ctx.budget`) highest-scoring eligible slots per row.

    Suppressed slots (EOS/EoT predictions) rank below every other eligible slot but above
    ineligible ones; ties break towards the leftmost slot (stable sort), so the choice never
    depends on batch composition.
    """
    k = ctx.budget if k is None else k
    key = scores.double().masked_fill(ctx.suppressed, torch.finfo(torch.float64).min)
    key = key.masked_fill(~ctx.eligible, float("-inf"))
    order = torch.argsort(key, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    k = torch.minimum(k.to(ranks.device), ctx.eligible.sum(1))
    return (ranks < k[:, None]) & ctx.eligible


def confidence_fallback(scores: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
    """Numerical guard for a policy's own scores (e.g. BoE's gated TIS, eq. 14-15, from a bf16/fp16
    backward): a row with a NaN or +-inf score at an eligible slot falls back to confidence p(x0)
    for this step. Returns (scores, fallbacks [b] long); pass `fallbacks` in `StepDecision`."""
    bad = (~torch.isfinite(scores) & ctx.eligible).any(1)
    if bool(bad.any()):
        scores = torch.where(bad[:, None], ctx.confidence.to(scores.dtype), scores)
    return scores, bad.long()


__all__ = ["confidence_fallback", "top_k_mask"]
