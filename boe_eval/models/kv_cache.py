"""Fast-dLLM's block-wise approximate KV caches as a model capability (arXiv 2505.22618, `NVlabs/Fast-dLLM`
`llada/generate.py` at f6b35ec: `generate_with_prefix_cache`, `generate_with_dual_cache`; docs/design.md "KV caches").

- `prefix`: at a block's first step the whole canvas is forwarded and every attention layer's keys and values are
  kept; later steps of the block forward only the columns [s, W) (the block and everything right of it), whose
  queries attend to the kept keys/values of [0, s) and to their own fresh ones.
- `dual`: later steps forward only the block [s, e); its queries attend to the kept keys/values of [0, s) and
  [e, W) (the suffix as it was at the block's first step) and to the block's fresh ones (Fast-dLLM's
  `replace_position`).

Mechanism: `F.scaled_dot_product_attention` (which the LLaDA, Dream, BERT-SDPA code call by attribute) is replaced
for one forward, like `mask_injection`: `recording` keeps the keys and values each kernel call receives (in call
order = layer order, after RoPE); `reusing` puts the kept ones around the fresh ones of the forwarded part, with
a key-padding mask over the whole canvas. The forwarded part must sit at its true positions: BERT-style models
take `position_ids`; for RoPE models whose code numbers positions from 0 (LLaDA's hub code for a forward without
`past_key_values`) the fresh queries and keys are rotated on by s (`rope_shift`: rotations compose,
R(p + s) = R(s) R(p), rotate-half pairs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

CACHE_MODES = ("none", "prefix", "dual")
#: model types (config.json, lower case) whose denoiser serves the cache (`Denoiser.supports_kv_cache`): read by the
#: pre-flight before a model loads
KV_CACHE_MODEL_TYPES = frozenset({"bert", "llada", "dream"})


def check_cache_mode(mode: str) -> str:
    from boe_eval.errors import ConfigError

    if mode not in CACHE_MODES:
        raise ConfigError(f"cache={mode!r} is invalid: it must be one of {', '.join(CACHE_MODES)}")
    return mode


def cache_refusal(sampler, cache: str) -> str | None:
    """The one line refusing `sampler` with `cache`, or None when they fit: the cache serves no-grad forwards of
    token ids, so a policy that needs autograd (BoE's surrogate forward and backward) would run uncached under a
    cached label. Look-ahead forwards of token ids (LookUM, boe_exact, info_gain, dVoting) are served by the cache
    like the step's own forward. WINO's steps are 4-D-mask forwards (its shadow block), which the cache does not
    serve either: refused too."""
    if cache == "none":
        return None
    name = getattr(sampler, "name", sampler)
    if getattr(sampler, "needs_grad", False):
        return (f"cache={cache} does not fit sampler={name}: its prediction is a forward with gradients, which the KV "
                "cache does not serve; use cache=none with it")
    if getattr(sampler, "needs_4d_mask", False):
        return (f"cache={cache} does not fit sampler={name}: its steps are forwards under a 4-D attention mask (a "
                "shadow block), which the KV cache does not serve; use cache=none with it")
    return None


@dataclass
class LayerStore:
    """Keys and values [b, heads, W, head_dim] of every attention call of one whole-canvas forward."""

    keys: list[Tensor] = field(default_factory=list)
    values: list[Tensor] = field(default_factory=list)


def rope_shift(theta: float) -> Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]:
    """(q, k, s) -> q and k rotated on by s positions (rotate-half RoPE with base `theta`, LLaDA's convention)."""

    def shift(query: Tensor, key: Tensor, start: int) -> tuple[Tensor, Tensor]:
        if start == 0:
            return query, key
        dim = query.shape[-1]
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, device=query.device, dtype=torch.float32) / dim))
        angle = torch.cat((start * inv_freq, start * inv_freq))
        cos, sin = angle.cos(), angle.sin()

        def rotate(x: Tensor) -> Tensor:
            first, second = x.float().chunk(2, dim=-1)
            return (x.float() * cos + torch.cat((-second, first), dim=-1) * sin).to(x.dtype)

        return rotate(query), rotate(key)

    return shift


@contextlib.contextmanager
def recording(store: LayerStore) -> Iterator[LayerStore]:
    """Inside the context every attention kernel call runs unchanged and its keys and values are kept in `store`."""
    kernel = F.scaled_dot_product_attention

    def record(query, key, value, *args, **kwargs):
        store.keys.append(key.detach())
        store.values.append(value.detach())
        return kernel(query, key, value, *args, **kwargs)

    F.scaled_dot_product_attention = record
    try:
        yield store
    finally:
        F.scaled_dot_product_attention = kernel


@contextlib.contextmanager
def reusing(store: LayerStore, index: Tensor, start: int, end: int, key_mask: Tensor,
            shift: Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]] | None = None) -> Iterator[list[int]]:
    """Inside the context the i-th attention call (fresh q, k, v of the columns [start, end)) attends over the whole
    canvas: the kept keys/values of rows `index` of `store` with [start, end) replaced by the fresh ones, under
    `key_mask` [b, W] (True = a real key); the model's own mask (over the forwarded part only) is dropped. Yields
    a one-element list counting the calls (a forward that made none did not use the cache)."""
    kernel = F.scaled_dot_product_attention
    calls = [0]
    allowed = key_mask.bool()[:, None, None, :]

    def reuse(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        layer = calls[0]
        calls[0] += 1
        if shift is not None:
            query, key = shift(query, key, start)
        kept_k, kept_v = store.keys[layer][index], store.values[layer][index]
        full_k = torch.cat([kept_k[:, :, :start], key.to(kept_k.dtype), kept_k[:, :, end:]], dim=2)
        full_v = torch.cat([kept_v[:, :, :start], value.to(kept_v.dtype), kept_v[:, :, end:]], dim=2)
        return kernel(query, full_k, full_v, attn_mask=allowed.to(query.device), dropout_p=dropout_p,
                      is_causal=False, scale=scale, **kwargs)

    F.scaled_dot_product_attention = reuse
    try:
        yield calls
    finally:
        F.scaled_dot_product_attention = kernel


__all__ = ["CACHE_MODES", "KV_CACHE_MODEL_TYPES", "LayerStore", "cache_refusal", "check_cache_mode", "recording", "reusing", "rope_shift"]
