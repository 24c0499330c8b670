"""Prophet early-commit decoding (Li et al., "Diffusion Language Models Know the Answer Before Decoding",
arXiv 2508.19982; `pixeli99/Prophet` `generate_earlyexit.py::generate`; docs/samplers/prophet.md).

LLaDA's top-k confidence decoding plus one check per step, made before that step's commit: the mean
top-1 minus top-2 *logit* gap over an answer region,

    g_t = mean_{i in answer region} (l_i(1) - l_i(2)),

is compared with a threshold that falls with the progress t / T of decoding (t counted from 1, T the
configured steps): 7.5 while t/T < 0.33, 5.0 while t/T < 0.67, 2.5 after. Once g_t reaches it, every
masked slot of the whole generation (the current and all later blocks) is written with this step's
proposal x0 and decoding ends: no further model call.

The loop decodes block by block, so the commit of later blocks is carried out one block at a time from
the stored proposal, at no model call (`current_prediction` returns a placeholder for those rows and
`select` writes the stored tokens). Tokens and NFE therefore equal the reference's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.decoding.meter import MeteredDenoiser
from boe_eval.errors import ConfigError
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import KnobRule, StepCost
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler, top_k_mask

#: progress boundaries of the early / mid / late phases (`should_early_exit`)
PHASE_BOUNDS = (0.33, 0.67)


@dataclass
class ProphetConfig(SamplerConfig):
    #: gap threshold while t/T < 0.33 (reference `early_threshold` default)
    early_gap: float = 7.5
    #: gap threshold while t/T < 0.67 (reference `mid_threshold` default)
    mid_gap: float = 5.0
    #: gap threshold after that (reference `late_threshold` default)
    late_gap: float = 2.5
    #: first answer slot, counted from the generation start; None: the whole generation is the answer region
    answer_start: int | None = None
    #: answer slots averaged when answer_start is set (reference `answer_length` default)
    answer_length: int = 5

    def validate(self) -> None:
        for name in ("early_gap", "mid_gap", "late_gap"):
            value = getattr(self, name)
            if value is None or isinstance(value, bool) or math.isnan(value) or value < 0:
                raise ConfigError(f"{name}={value!r} is invalid: it must be a number >= 0 (inf disables early commit)")
        if self.answer_start is not None and (isinstance(self.answer_start, bool) or not isinstance(self.answer_start, int)
                                              or self.answer_start < 0):
            raise ConfigError(f"answer_start={self.answer_start!r} is invalid: it must be null or an integer >= 0")
        if isinstance(self.answer_length, bool) or not isinstance(self.answer_length, int) or self.answer_length < 1:
            raise ConfigError(f"answer_length={self.answer_length!r} is invalid: it must be a positive integer")


def phase_threshold(progress: float, config: ProphetConfig) -> float:
    """Gap threshold at decoding progress t / T (reference `should_early_exit`)."""
    if progress < PHASE_BOUNDS[0]:
        return config.early_gap
    if progress < PHASE_BOUNDS[1]:
        return config.mid_gap
    return config.late_gap


def answer_region(ctx: StepContext, config: ProphetConfig) -> Tensor:
    """Answer slots [b, L]: the whole generation, or `answer_length` slots from `answer_start`."""
    generation = ctx.masked | ctx.committed
    if config.answer_start is None:
        return generation
    offset = torch.arange(ctx.x.shape[1], device=ctx.x.device)[None, :] - ctx.gen_start[:, None]
    window = (offset >= config.answer_start) & (offset < config.answer_start + config.answer_length)
    return window & generation


def mean_top2_gap(logits: Tensor, region: Tensor) -> Tensor:
    """Mean over `region` of the top-1 minus top-2 logit per row [b] (NaN where the region is empty)."""
    top2 = logits.float().topk(2, dim=-1).values
    gap = (top2[..., 0] - top2[..., 1]).double()
    gap = torch.where(region, gap, torch.zeros_like(gap))
    count = region.sum(1)
    return torch.where(count > 0, gap.sum(1) / count.clamp(min=1), torch.full_like(gap[:, 0], float("nan")))


@register_sampler("prophet", ProphetConfig)
class ProphetSampler(Sampler):
    """Top-k confidence with an early commit of every remaining slot once the answer's top-2 gap is large."""

    knob = KnobRule(lambda p: StepCost(1), early_exit=True,
                     note="steps = budget; an early commit ends decoding, placed at measured NFE")

    config: ProphetConfig

    def start(self, batch_size: int, width: int, device: torch.device) -> None:
        #: per row: the tokens proposed at the early-commit step (full canvas width), None before it
        self._committed_proposal: list[Tensor | None] = [None] * batch_size
        self.exit_steps: list[int | None] = [None] * batch_size  #: global step (0-based) of each row's early commit

    def current_prediction(
        self, model: MeteredDenoiser, rows: Tensor, x: Tensor, attention_mask: Tensor, timestep: Tensor | None
    ) -> Tensor | None:
        done = torch.tensor([self._committed_proposal[r] is not None for r in rows.tolist()], device=x.device)
        if not bool(done.any()):
            return None
        # rows past their early commit need no model call: a placeholder prediction, `select` writes the stored tokens
        vocab = int(model.embedding_matrix.shape[0])
        logits = torch.zeros((x.shape[0], x.shape[1], vocab), dtype=torch.float32, device=x.device)
        live = (~done).nonzero().squeeze(1)
        if live.numel():
            with torch.no_grad():
                out = model.forward(rows[live.cpu()], x[live], attention_mask=attention_mask[live],
                                    timestep=None if timestep is None else timestep[live])
            logits[live] = out.float()
        return logits

    def select(self, ctx: StepContext) -> StepDecision:
        rows = ctx.rows.tolist()
        done = torch.tensor([self._committed_proposal[r] is not None for r in rows], device=ctx.x.device)
        threshold = phase_threshold((ctx.step + 1) / ctx.total_steps, self.config)
        gap = mean_top2_gap(ctx.logits, answer_region(ctx, self.config))
        exit_now = ~done & ~torch.isnan(gap) & (gap >= threshold)
        commit = torch.where((done | exit_now)[:, None], ctx.eligible, top_k_mask(ctx.confidence, ctx))
        tokens = ctx.x0.clone()
        for j, row in enumerate(rows):
            if bool(exit_now[j]):
                self._committed_proposal[row] = ctx.x0[j].clone()
                self.exit_steps[row] = ctx.step
            elif bool(done[j]):
                tokens[j] = self._committed_proposal[row]
        return StepDecision(commit=commit, tokens=tokens)
