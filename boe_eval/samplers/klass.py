"""KLASS, KL-adaptive stability sampling (Kim et al., arXiv 2511.05664; docs/references.md §8;
`shkim0116/KLASS:src/model/llada_klass.py::stable_confident_decode`, alg="klass", unmask_strategy="all").

Every forward gives p_t at every slot; KL_t(i) = sum_v p_t(v) (log(p_t(v) + 1e-12) - log(p_{t-1}(v) + 1e-12))
compares it with the previous forward of the same sequence (across block boundaries too, as the
reference keeps one history). A masked slot of the current block is *ready* when

    p_t(x0_i) > tau   and   its last H KL values are all < kappa   (only from block step H - 1 on)

and a step commits every ready slot; when none is ready it falls back to the top-`budget` slots by
confidence (the uniform schedule's count). Blocks therefore finish early and the NFE is adaptive.
With no previous forward (the first step) the KL is +inf (the reference compares with an all-zero
distribution, which gives ~27 nats: the gate is closed either way).

Differences from the reference code, on purpose: the fallback count is clamped to the masked slots
left in the block (the reference's `topk` would then pick unmasked slots and overwrite them), and the
mask token is excluded from p_t as everywhere in this harness. Previous distributions are kept for
the current and the next block only (all the gate ever reads; the current block alone when there is
one block), in float32. At temperature > 0 the
reference computes p_t (and so the KLs and the confidence) from Gumbel-perturbed logits; here p_t is
always the model's distribution and only the written token is sampled (the harness's convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.errors import ConfigError
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import KnobRule, StepCost
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler, top_k_mask

KL_EPSILON = 1e-12


@dataclass
class KlassConfig(SamplerConfig):
    #: tau: confidence a slot must exceed (reference function default 0.9; scripts: GSM8K/MATH 0.6,
    #: HumanEval 0.9, MBPP 0.7 on LLaDA)
    confidence_threshold: float = 0.9
    #: kappa: every one of the last H step-to-step KLs must be below it (default 0.01; GSM8K 0.015)
    kl_threshold: float = 0.01
    #: H: number of consecutive KL values checked (reference default 2)
    kl_history: int = 2

    def validate(self) -> None:
        if not 0 <= self.confidence_threshold < 1:
            raise ConfigError(f"confidence_threshold={self.confidence_threshold!r} is invalid: it must be in [0, 1)")
        if not math.isfinite(self.kl_threshold) or self.kl_threshold <= 0:
            raise ConfigError(f"kl_threshold={self.kl_threshold!r} is invalid: it must be a finite number > 0")
        if not isinstance(self.kl_history, int) or isinstance(self.kl_history, bool) or self.kl_history < 1:
            raise ConfigError(f"kl_history={self.kl_history!r} is invalid: it must be a positive integer")


def step_kl(current: Tensor, previous: Tensor) -> Tensor:
    """KL(p_t || p_{t-1}) per slot with the reference's 1e-12 smoothing, in float64."""
    current, previous = current.double(), previous.double()
    return (current * (torch.log(current + KL_EPSILON) - torch.log(previous + KL_EPSILON))).sum(-1)


@register_sampler("klass", KlassConfig)
class KlassSampler(Sampler):
    """Commit all confident slots whose distribution has been stable for H steps, else top-k confidence."""

    knob = KnobRule(lambda p: StepCost(1), early_exit=True,
                     note="steps = budget; blocks may finish early, placed at measured NFE")

    config: KlassConfig

    def start(self, batch_size: int, width: int, device: torch.device) -> None:
        self._batch_size = batch_size
        #: per row: block index of the stored window, None before the first forward
        self._window_block: list[int | None] = [None] * batch_size
        self._previous: Tensor | None = None  # [batch, W, V] probabilities of the last forward in the window
        self._history: Tensor | None = None  # [batch, W, H] last H KL values (oldest first)

    def _window(self, ctx: StepContext) -> tuple[Tensor, int]:
        """Indices [b, W] of the current and (when there are several blocks) the next block's slots,
        clamped to the canvas, and W."""
        block_length = int((ctx.block_end - ctx.block_start)[0])
        width = block_length * min(2, ctx.num_blocks)
        index = ctx.block_start[:, None] + torch.arange(width, device=ctx.x.device)[None, :]
        return index.clamp(max=ctx.x.shape[1] - 1), width

    def _allocate(self, width: int, vocab: int, device: torch.device) -> None:
        if self._previous is None or self._previous.shape[1:] != (width, vocab):
            self._previous = torch.zeros((self._batch_size, width, vocab), dtype=torch.float32, device=device)
            self._history = torch.full(
                (self._batch_size, width, self.config.kl_history), float("inf"), dtype=torch.float64, device=device
            )
            self._window_block = [None] * self._batch_size

    def select(self, ctx: StepContext) -> StepDecision:
        index, width = self._window(ctx)
        vocab = int(ctx.probs.shape[-1])
        self._allocate(width, vocab, ctx.x.device)
        assert self._previous is not None and self._history is not None
        rows = ctx.rows.tolist()
        block_length = int((ctx.block_end - ctx.block_start)[0])
        current = ctx.probs.gather(1, index[..., None].expand(-1, -1, vocab))  # [b, W, V]
        kl = torch.full(index.shape, float("inf"), dtype=torch.float64, device=ctx.x.device)
        for j, row in enumerate(rows):
            stored = self._window_block[row]
            if stored == ctx.block_index:
                previous, history = self._previous[row], self._history[row]
            elif stored is not None and stored == ctx.block_index - 1:  # stored window's next block = current
                previous = torch.zeros_like(self._previous[row])
                previous[:block_length] = self._previous[row, block_length:]
                history = torch.full_like(self._history[row], float("inf"))
                history[:block_length] = self._history[row, block_length:]
            else:
                previous, history = None, torch.full_like(self._history[row], float("inf"))
            if previous is not None:
                kl[j] = step_kl(current[j], previous)
                if stored != ctx.block_index:
                    kl[j, block_length:] = float("inf")  # slots two blocks ahead had no stored distribution
            self._history[row] = torch.cat([history[:, 1:], kl[j, :, None]], dim=1)
            self._previous[row] = current[j].float()
            self._window_block[row] = ctx.block_index

        history = self._history[ctx.rows.to(self._history.device)]  # [b, W, H]
        if ctx.block_step >= self.config.kl_history - 1:
            stable_window = (history < self.config.kl_threshold).all(-1)
        else:
            stable_window = torch.zeros(index.shape, dtype=torch.bool, device=ctx.x.device)
        stable = torch.zeros_like(ctx.eligible)
        stable.scatter_(1, index[:, :block_length], stable_window[:, :block_length])  # the current block
        ready = stable & (ctx.confidence > self.config.confidence_threshold) & ctx.eligible
        fallback = top_k_mask(ctx.confidence, ctx)
        has_ready = ready.any(1, keepdim=True)
        return StepDecision(commit=torch.where(has_ready, ready, fallback))
