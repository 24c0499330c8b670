"""DUS, the Dilated Unmasking Scheduler (Luxembourg, Permuter & Nachmani, "Plan for Speed: Dilated Scheduling
for Masked Diffusion Language Models", arXiv 2506.19037; `omerlux/DUS` `generate.py::generate_scheduled` with
`scheduler="dilated"`; docs/samplers/dus.md).

The positions of each block (length B) are split into coarse-to-fine groups of non-adjacent slots fixed in
advance: with stride s = B // a^k (a the dilation base, k `base_skip`), the first group is every slot whose
block offset is a multiple of s, then s //= a and the next group is the new multiples not yet taken, down
to s = 1, then any leftover; a last group smaller than the one before it is merged into it
(`dilated_unmask_levels` + `merge_last_level`). For B = 32, a = 2: groups of 2, 2, 4, 8, 16 slots, i.e.
log2 B model calls per block instead of B. One group is written per step, whatever the confidences.

With a confidence threshold (reference default 0.3, `remasking="low_confidence"`), a slot of the group
whose p(x0) is below it is not kept at this step (the reference writes and then remasks it), except at a
block's last step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.errors import ConfigError
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import KnobRule, StepCost
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler


@dataclass
class DusConfig(SamplerConfig):
    #: a: dilation base; a block of B slots takes about log_a(B) steps (README command and function default: 2)
    base: int = 2
    #: k: the first stride is B // a^k (README `base_skip=1`)
    base_skip: int = 1
    #: slots of a group with p(x0) below it are deferred (README `confidence_threshold=0.3`); 0 keeps every slot
    confidence_threshold: float = 0.3

    def validate(self) -> None:
        if isinstance(self.base, bool) or not isinstance(self.base, int) or self.base < 1:
            raise ConfigError(f"base={self.base!r} is invalid: it must be an integer >= 1 (1 = the whole block at once)")
        if isinstance(self.base_skip, bool) or not isinstance(self.base_skip, int) or self.base_skip < 1:
            raise ConfigError(f"base_skip={self.base_skip!r} is invalid: it must be an integer >= 1")
        if self.confidence_threshold is None or math.isnan(self.confidence_threshold) or \
                not 0 <= self.confidence_threshold <= 1:
            raise ConfigError(f"confidence_threshold={self.confidence_threshold!r} is invalid: it must be in [0, 1]")


def dilated_groups(length: int, base: int, base_skip: int = 1) -> list[list[int]]:
    """Block offsets 0..length-1 split into the DUS groups, coarse to fine, the last small group merged."""
    if base == 1:
        return [list(range(length))]
    stride = length // base**base_skip
    groups: list[list[int]] = []
    taken: set[int] = set()
    while stride >= 1:
        group = [i for i in range(0, length, stride) if i not in taken]
        if group:
            groups.append(group)
            taken.update(group)
        stride //= base
    rest = [i for i in range(length) if i not in taken]
    if rest:
        groups.append(rest)
    if len(groups) >= 2 and len(groups[-1]) < len(groups[-2]):
        groups[-2].extend(groups.pop())
    return groups


@register_sampler("dus", DusConfig)
class DusSampler(Sampler):
    """Write the block's next dilated group of slots each step (low-confidence slots deferred)."""

    knob = KnobRule(lambda p: StepCost(1), adaptive="base",
                     note="dilation base swept (NFE = blocks x log_base(block_length)), placed at measured NFE")

    config: DusConfig

    def _group_index(self, block_length: int) -> tuple[Tensor, int]:
        """Step at which each block offset is scheduled [B] and the number of steps."""
        groups = dilated_groups(block_length, self.config.base, self.config.base_skip)
        step_of = torch.empty(block_length, dtype=torch.long)
        for step, group in enumerate(groups):
            step_of[group] = step
        return step_of, len(groups)

    def block_budgets(self, n_masked: Tensor, steps_per_block: int) -> Tensor:
        """No per-step count: the schedule is positional, and a step may keep no slot (all deferred)."""
        _, steps = self._group_index(max(int(n_masked.max()), 1))
        return torch.zeros((n_masked.shape[0], steps), dtype=torch.long)

    def select(self, ctx: StepContext) -> StepDecision:
        block_length = int((ctx.block_end - ctx.block_start)[0])
        step_of, steps = self._group_index(block_length)
        offset = torch.arange(ctx.x.shape[1], device=ctx.x.device)[None, :] - ctx.block_start[:, None]
        scheduled = step_of.to(ctx.x.device)[offset.clamp(0, block_length - 1)]
        due = ctx.eligible & (scheduled <= ctx.block_step)  # this step's group and any deferred slot
        if ctx.block_step >= steps - 1:
            return StepDecision(commit=ctx.eligible.clone())
        confidence = ctx.confidence.masked_fill(ctx.suppressed, float("-inf"))
        return StepDecision(commit=due & (confidence >= self.config.confidence_threshold))
