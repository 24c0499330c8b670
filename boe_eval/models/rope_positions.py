"""Explicit positions for a RoPE model whose code numbers a forward's positions 0..n-1 itself (LLaDA's hub code has
no `position_ids`): `repositioned(shift, theta)` rotates every attention call's queries and keys on by `shift`
[B, n] (position_ids - column), so column c sits at position c + shift[b, c]. Rotary rotations compose,
R(c + s) = R(s) R(c) (rotate-half pairs, base `theta`), so a query and a key end up at their target positions
whatever the model's own table was; only the relative offset enters the scores. Used for 4-D-mask forwards
(`LLaDADenoiser.masked_logits`: WINO's shadow block at the positions of the block it shadows); the KV cache's
`kv_cache.rope_shift` is the same rotation with one shift for every column.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


def rotate_on(x: Tensor, shift: Tensor, theta: float) -> Tensor:
    """`x` [B, heads, n, d] rotated on by `shift` [B, n] positions (rotate-half RoPE, base `theta`), in float32."""
    dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim))
    angle = shift.to(device=x.device, dtype=torch.float32)[..., None] * inv_freq  # [B, n, d/2]
    angle = torch.cat((angle, angle), dim=-1)[:, None]  # [B, 1, n, d]
    cos, sin = angle.cos(), angle.sin()
    first, second = x.float().chunk(2, dim=-1)
    return (x.float() * cos + torch.cat((-second, first), dim=-1) * sin).to(x.dtype)


@contextlib.contextmanager
def repositioned(shift: Tensor, theta: float) -> Iterator[list[int]]:
    """Inside the context every `F.scaled_dot_product_attention` call over the forward's own n columns (query and key
    length n = shift.shape[1]) gets its queries and keys rotated on by `shift` first. Yields a one-element list
    counting the calls it rotated (0 after a forward: the model does not attend through that kernel)."""
    kernel = F.scaled_dot_product_attention
    calls = [0]
    length = shift.shape[1]

    def rotated(query, key, value, *args, **kwargs):
        if query.shape[-2] == length and key.shape[-2] == length:
            calls[0] += 1
            query, key = rotate_on(query, shift, theta), rotate_on(key, shift, theta)
        return kernel(query, key, value, *args, **kwargs)

    F.scaled_dot_product_attention = rotated
    try:
        yield calls
    finally:
        F.scaled_dot_product_attention = kernel


__all__ = ["repositioned", "rotate_on"]
