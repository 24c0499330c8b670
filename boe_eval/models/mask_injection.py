"""A real attention mask for models whose own code drops it (issue 19): mask injection.

LLaDA's hub remote code builds an attention bias from `attention_mask` and never hands it to the attention
kernel, so padded positions are attended to and prompts of different lengths cannot share a batch. The
injection uses the mechanism of efficient ActiveQueryAttention (`boe_eval.models.aqa`): for the duration of
one forward, `torch.nn.functional.scaled_dot_product_attention` (which LLaDA, Dream, MDLM and transformers'
SDPA attention call by attribute) is replaced by a wrapper that hands the kernel the model's own `attn_mask`
combined with the injected one:

- a key-padding mask `allowed` [B, K] (True = the key may be attended to), applied to every query row, or
- a general mask `allowed` [B, 1, Q, K] (or [B, H, Q, K]): query row q of sequence b may attend to key k
  iff `allowed[b, :, q, k]`. Every query row whose output is used must allow at least one key (a row with
  none gives NaN or zeros depending on the kernel).

Combination: a boolean `attn_mask` of the model is AND-ed with `allowed`; an additive (float) one gets -inf
where `allowed` is False; `is_causal=True` becomes an explicit lower-triangular boolean mask AND-ed in.
Nested injections compose (the inner wrapper calls the outer one), and so does efficient ActiveQueryAttention
on either side. Every intercepted call is checked against the mask's batch and key (and query) length.

Whether injection holds for a loaded model is not assumed: the padding probe (`boe_eval.models.padding_probe`)
runs with it switched on and only then lets the loop batch prompts of any length; a model that computes
attention another way (e.g. a flash-attention kernel) fails the probe and keeps equal-length batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class InjectionRecord:
    """What one injection context saw: the number of intercepted attention kernel calls."""

    calls: int = 0


def as_attention_mask(allowed: Tensor) -> Tensor:
    """`allowed` as a boolean mask broadcastable to [B, H, Q, K]: [B, K] -> [B, 1, 1, K]; 4-D kept."""
    if allowed.dim() == 2:
        allowed = allowed[:, None, None, :]
    if allowed.dim() != 4:
        raise ValueError(f"injected attention mask must be [B, K] or [B, 1, Q, K], got shape {tuple(allowed.shape)}")
    return allowed.bool()


def _check_fits(allowed: Tensor, query: Tensor, key: Tensor) -> None:
    batch, _, queries, keys = allowed.shape
    fits = (
        batch in (1, query.shape[0])
        and keys == key.shape[-2]
        and queries in (1, query.shape[-2])
        and allowed.shape[1] in (1, query.shape[1])
    )
    if not fits:
        raise RuntimeError(
            f"injected attention mask {tuple(allowed.shape)} does not fit an attention call with query "
            f"{tuple(query.shape)} and key {tuple(key.shape)}: the model computes attention on other shapes"
        )


def combine_masks(attn_mask: Tensor | None, allowed: Tensor, is_causal: bool, query: Tensor, key: Tensor) -> Tensor:
    """The model's own `attn_mask` (bool or additive) restricted to `allowed` (see the module docstring)."""
    allowed = allowed.to(query.device)
    if is_causal:
        causal = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
        allowed = allowed & causal
    if attn_mask is None:
        return allowed
    if attn_mask.dtype == torch.bool:
        return attn_mask & allowed
    return attn_mask.masked_fill(~allowed, float("-inf"))


@contextlib.contextmanager
def injected_attention_mask(allowed: Tensor) -> Iterator[InjectionRecord]:
    """Inside the context every `F.scaled_dot_product_attention` call attends only where `allowed` says
    ([B, K] key padding or [B, 1, Q, K]; see the module docstring). Yields the record of intercepted calls."""
    allowed = as_attention_mask(allowed)
    kernel = F.scaled_dot_product_attention
    record = InjectionRecord()

    def masked_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        record.calls += 1
        _check_fits(allowed, query, key)
        mask = combine_masks(attn_mask, allowed, is_causal, query, key)
        extra = {"enable_gqa": True} if enable_gqa else {}
        return kernel(query, key, value, attn_mask=mask, dropout_p=dropout_p, is_causal=False, scale=scale, **extra)

    F.scaled_dot_product_attention = masked_sdpa
    try:
        yield record
    finally:
        F.scaled_dot_product_attention = kernel


__all__ = ["InjectionRecord", "as_attention_mask", "combine_masks", "injected_attention_mask"]
