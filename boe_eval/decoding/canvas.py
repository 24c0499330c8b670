"""The canvas: each row is [prompt, MASK x gen_length], right-padded to the batch width with a real
attention mask (docs/design.md "Decoding loop"), so a row decodes to the same tokens whatever else
shares its batch.

With a width multiple m > 0 every row's own canvas width is canonical: prompt + gen_length rounded up to a
multiple of m (at most the model's position table), and the loop batches only rows of equal canonical width
(`generate_batched`). A row then has the same shapes alone and in any batch. Low-precision models need this
(issue 19): on CPU, a bf16 row computed at the same width is bit-identical alone and in a batch, while a wider
canvas moves its logits by a bf16 rounding step and flips near-ties."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from boe_eval.errors import ConfigError
from boe_eval.models.denoiser import Denoiser


@dataclass
class Canvas:
    x: Tensor  #: [B, W] token ids (mask id at masked slots, pad id right of each row)
    attention_mask: Tensor  #: [B, W] 1 on real positions
    is_masked: Tensor  #: [B, W] bool, still-masked slots of the generation region
    gen_start: Tensor  #: [B] first generation position (= prompt length)
    gen_region: Tensor  #: [B, W] bool, the generation slots
    positions: Tensor = field(repr=False)  #: [W] 0..W-1

    def block(self, index: int, block_length: int) -> tuple[Tensor, Tensor, Tensor]:
        """(block_start [B], block_end [B], in_block [B, W]) of block `index`."""
        start = self.gen_start + index * block_length
        end = start + block_length
        in_block = (self.positions[None] >= start[:, None]) & (self.positions[None] < end[:, None])
        return start, end, in_block

    def write(self, rows: Tensor, commit: Tensor, tokens: Tensor, remask: Tensor | None, mask_id: int,
              offset: int = 0) -> None:
        """Write `tokens` at `commit` [b, W - offset] (columns [offset, W)) of `rows`, then turn `remask` slots
        back into masks."""
        new_x = torch.where(commit, tokens, self.x[rows, offset:])
        new_masked = self.is_masked[rows, offset:] & ~commit
        if remask is not None:
            new_x = torch.where(remask, torch.full_like(new_x, mask_id), new_x)
            new_masked = new_masked | remask
        self.x[rows, offset:] = new_x
        self.is_masked[rows, offset:] = new_masked

    def generation(self, row: int, gen_length: int, mask_id: int) -> list[int]:
        """The generation region of `row`, with the mask id where a slot was never written."""
        start = int(self.gen_start[row])
        gen = self.x[row, start : start + gen_length].tolist()
        masked = self.is_masked[row, start : start + gen_length].tolist()
        return [mask_id if m else t for t, m in zip(gen, masked)]


def check_prompts(denoiser: Denoiser, prompts: Sequence[Sequence[int]], gen_length: int) -> None:
    """Refuse a batch the model cannot decode exactly: unequal prompt lengths for a model that
    ignores the padding mask, or a canvas longer than the model's position table."""
    if not denoiser.honours_padding_mask and len({len(p) for p in prompts}) > 1:
        raise ValueError(
            f"{denoiser.name} ignores the padding mask: batch only prompts of equal length "
            "(generate_batched does this)"
        )
    longest = max(len(p) for p in prompts) + gen_length
    if denoiser.max_length is not None and longest > denoiser.max_length:
        raise ConfigError(
            f"prompt ({longest - gen_length} tokens) + gen_length ({gen_length}) = {longest} "
            f"exceeds the {denoiser.max_length} positions {denoiser.name} accepts: use a shorter gen_length or another model"
        )


def canonical_width(prompt_length: int, gen_length: int, multiple: int, max_length: int | None = None) -> int:
    """The canvas width of one row: prompt + gen_length, rounded up to `multiple` (0: not rounded), capped at
    `max_length` (the model's position table) but never below prompt + gen_length."""
    width = prompt_length + gen_length
    if multiple > 0:
        rounded = -(-width // multiple) * multiple
        width = max(width, min(rounded, max_length)) if max_length else rounded
    return width


def build_canvas(denoiser: Denoiser, prompts: Sequence[Sequence[int]], gen_length: int, multiple: int = 0) -> Canvas:
    """The batch's canvas: rows right-padded to the widest row's canonical width (see the module docstring)."""
    device = denoiser.device
    lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    width = canonical_width(int(lengths.max()), gen_length, multiple, denoiser.max_length)
    batch = len(prompts)
    x = torch.full((batch, width), denoiser.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        n = len(prompt)
        x[i, :n] = torch.as_tensor(list(prompt), dtype=torch.long)
        x[i, n : n + gen_length] = denoiser.mask_id
        attention_mask[i, : n + gen_length] = 1
    positions = torch.arange(width)
    gen_region = (positions[None] >= lengths[:, None]) & (positions[None] < lengths[:, None] + gen_length)
    return Canvas(
        x=x.to(device),
        attention_mask=attention_mask.to(device),
        is_masked=gen_region.clone().to(device),
        gen_start=lengths.to(device),
        gen_region=gen_region.to(device),
        positions=positions.to(device),
    )


__all__ = ["Canvas", "build_canvas", "canonical_width", "check_prompts"]
