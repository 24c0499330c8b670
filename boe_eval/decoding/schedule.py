"""Per-step token budgets b_t and the block layout (docs/references.md §1, LLaDA `generate.py`)."""

from __future__ import annotations

import torch
from torch import Tensor

from boe_eval.errors import ConfigError  # re-exported: defined where importing it needs no torch


def uniform_budgets(n_masked: Tensor, steps: int) -> Tensor:
    """LLaDA's `get_num_transfer_tokens`: spread n masked tokens over `steps` steps evenly,
    the remainder going to the earliest steps. Returns [B, steps] (long)."""
    n_masked = n_masked.long()
    base = n_masked.div(steps, rounding_mode="floor")
    rem = n_masked - base * steps
    budgets = base[:, None].expand(-1, steps).clone()
    budgets += (torch.arange(steps, device=n_masked.device)[None, :] < rem[:, None]).long()
    return budgets


def validate_layout(gen_length: int, block_length: int | None, steps: int) -> tuple[int, int, int]:
    """Check `gen_length`, `block_length`, `steps` like LLaDA does and return
    (block_length, num_blocks, steps_per_block). Raises `ConfigError` with a one-line reason."""
    if not isinstance(gen_length, int) or gen_length <= 0:
        raise ConfigError(f"gen_length={gen_length!r} is invalid: it must be a positive integer")
    block_length = gen_length if block_length in (None, 0) else block_length
    if not isinstance(block_length, int) or block_length <= 0:
        raise ConfigError(f"block_length={block_length!r} is invalid: it must be a positive integer")
    if not isinstance(steps, int) or steps <= 0:
        raise ConfigError(f"steps={steps!r} is invalid: it must be a positive integer")
    if gen_length % block_length:
        raise ConfigError(
            f"block_length={block_length} does not divide gen_length={gen_length}: "
            "gen_length must be a multiple of block_length"
        )
    num_blocks = gen_length // block_length
    if steps % num_blocks:
        raise ConfigError(
            f"steps={steps} is not a multiple of the number of blocks ({num_blocks} = "
            f"gen_length {gen_length} / block_length {block_length})"
        )
    if steps > gen_length:
        raise ConfigError(
            f"steps={steps} exceeds gen_length={gen_length}: at most one step per generated token is allowed"
        )
    return block_length, num_blocks, steps // num_blocks
