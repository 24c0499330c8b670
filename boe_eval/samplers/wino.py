"""WINO, wide-in narrow-out revokable decoding (Hong et al., arXiv 2507.18578; the official `decoding_wino` as kept in
`Kamichanw/d2Cache` `src/generation/wino_official.py`; docs/samplers/wino.md).

Each step is one forward over the canvas followed by a *shadow block*: a copy of the current block's positions, all
mask tokens, appended after the canvas with the block's position ids. A boolean 4-D attention mask lets every canvas
query see the canvas only (its logits are the plain forward's), and lets shadow query i see the shadow block and the
whole canvas except the block's slot i, so shadow query i re-predicts slot i without seeing its own written token.
For a model whose token p is predicted by the query at p - 1 (Dream, `prediction_lag` 1) the shadow block starts one
position early with the written token before the block, and the shadow query at p - 1 is the one that cannot see slot
p (docs/samplers/wino.md "Dream").

* wide in: every masked slot of the block with confidence p(x0) > tau (`threshold`, 0.6) is written, at most
  max_accept = min(max(floor(0.7 |M|), 5), 20) of them (the most confident), at least the most confident one;
* narrow out: if more than one slot was written this step, every slot written at an earlier step of the block whose
  shadow probability of its written token is < tau_back (`threshold_back`, 0.9) is masked again; when that is at
  least the previous step's write count a, only the a - 1 lowest are.

The block ends when no slot of it is masked; NFE = forwards run (adaptive). Tokens are the argmax (the reference
ignores its temperature; `propose_tokens`). The step's forward is this policy's `current_prediction`, through
`model.forward_masked`: the canvas logits go to the loop as the step's prediction, the shadow logits to `select`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.decoding.meter import MeteredDenoiser
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.errors import ConfigError
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler, top_k_mask
from boe_eval.samplers.cost import KnobRule, StepCost

#: the reference's write cap: min(max(floor(0.7 |M|), 5), 20); its first remask cap ("last_accept = 30")
ACCEPT_FRACTION, ACCEPT_MIN, ACCEPT_MAX, FIRST_LAST_ACCEPT = 0.7, 5, 20, 30


@dataclass
class WinoConfig(SamplerConfig):
    #: tau, the wide-in threshold on p(x0) (reference `threshold` / d2Cache `wide_in_thres`: 0.6)
    threshold: float = 0.6
    #: tau_back, the narrow-out threshold on the shadow probability of a written token (`threshold_back`: 0.9)
    threshold_back: float = 0.9

    def validate(self) -> None:
        for name in ("threshold", "threshold_back"):
            value = getattr(self, name)
            if value is None or isinstance(value, bool) or not math.isfinite(value) or not 0 <= value <= 1:
                raise ConfigError(f"{name}={value!r} is invalid: it must be a number in [0, 1]")


def shadow_inputs(x: Tensor, attention: Tensor, block_start: Tensor, block_length: int,
                  mask_id: int, lag: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """The canvas with its shadow block appended: ids [b, L + S], the boolean mask [b, 1, L + S, L + S] and the
    position ids [b, L + S], S = block_length + lag (module docstring). Shadow column j sits at position
    block_start - lag + j and its query cannot see canvas slot block_start + j, the slot its output predicts (lag:
    the model's `prediction_lag`; Dream's token p comes from the query at p - 1, so its shadow starts one position
    early, with the written token before the block). Padding keys are hidden from every query."""
    b, width = x.shape
    shadow = block_length + lag
    total = width + shadow
    lead = x.gather(1, (block_start[:, None] - 1).clamp(min=0).expand(b, lag))
    masks = torch.full((b, block_length), mask_id, dtype=x.dtype, device=x.device)
    ids = torch.cat([x, lead, masks], dim=1)
    mask = torch.zeros((b, total, total), dtype=torch.bool, device=x.device)
    mask[:, :, :width] = attention.bool()[:, None, :]
    mask[:, width:, width:] = True
    positions = torch.arange(width, device=x.device)[None, :].expand(b, width)
    shadow_positions = block_start[:, None] - lag + torch.arange(shadow, device=x.device)[None, :]
    hidden = torch.eye(shadow, block_length, dtype=torch.bool, device=x.device)
    for j in range(b):
        lo = int(block_start[j])
        mask[j, width:, lo:lo + block_length] &= ~hidden
    return ids, mask[:, None], torch.cat([positions, shadow_positions], dim=1)


@register_sampler("wino", WinoConfig)
class WinoSampler(Sampler):
    """WINO: write wide above tau, verify every earlier write of the block through a shadow block, remask below tau_back."""

    knob = KnobRule(lambda p: StepCost(1), adaptive="threshold", note="WINO tau swept, placed at measured NFE")
    needs_4d_mask = True

    config: WinoConfig

    def start(self, batch_size: int, width: int, device: torch.device) -> None:
        self._last_accept = [FIRST_LAST_ACCEPT] * batch_size  #: per row, the previous step's write count
        self._gen_start: list[int | None] = [None] * batch_size  #: per row, the first generation slot
        self._block, self._block_length = -1, 0
        self._shadow: Tensor | None = None  #: this step's shadow logits [b, B, V]

    def block_budgets(self, n_masked: Tensor, steps_per_block: int) -> Tensor:
        """The loop's uniform budgets (ignored: WINO sets its own pace). A new block: the reference's reset of
        `last_accept`; the first block, fully masked, gives the block length."""
        self._block += 1
        if self._block == 0:
            self._block_length = int(n_masked.max())
        self._last_accept = [FIRST_LAST_ACCEPT] * len(self._last_accept)
        return super().block_budgets(n_masked, steps_per_block)

    def current_prediction(
        self, model: MeteredDenoiser, rows: Tensor, x: Tensor, attention_mask: Tensor, timestep: Tensor | None
    ) -> Tensor | None:
        """The step's one forward, canvas plus shadow block: the canvas logits go to the loop (they are the plain
        forward's), the shadow logits are kept for `select`. The current block is the loop's: the first generation
        slot of each row (all masked at its first step) + block index x block length."""
        if not model.supports_4d_mask:
            raise ConfigError(f"sampler 'wino' needs a denoiser that takes a 4-D attention mask and {model.name!r} "
                              "does not (supports_4d_mask is False)")
        for j, row in enumerate(rows.tolist()):
            if self._gen_start[row] is None:
                self._gen_start[row] = int((x[j] == model.mask_id).nonzero()[0])
        # whole-canvas inputs: the step window's prefix (prompt columns, all real) in front of `x`
        prefix = model.offset
        canvas = model.canvas_ids(rows, x)
        attention = torch.cat([attention_mask.new_ones((x.shape[0], prefix)), attention_mask], dim=1)
        block_offset = prefix + self._block * self._block_length
        block_start = torch.tensor([self._gen_start[r] + block_offset for r in rows.tolist()], device=x.device)
        lag = model.prediction_lag
        ids, mask, positions = shadow_inputs(canvas, attention, block_start, self._block_length, model.mask_id, lag)
        with torch.no_grad():
            logits = model.forward_masked(rows, ids, mask, positions)
        width = canvas.shape[1]
        self._shadow = logits[:, width + lag:].float().clone()
        self._shadow[..., list(model.forbidden_ids)] = float("-inf")
        return logits[:, prefix:width]

    def propose_tokens(self, ctx: StepContext) -> Tensor:
        """The argmax, whatever the run's temperature (the reference's `decoding_wino` ignores its temperature)."""
        return ctx.logits.argmax(-1)

    def select(self, ctx: StepContext) -> StepDecision:
        block_length = self._block_length
        if bool((ctx.block_end - ctx.block_start != block_length).any()):
            raise RuntimeError("sampler 'wino' lost track of the loop's block")
        p = torch.softmax(ctx.logits.double(), dim=-1)
        shadow = torch.softmax(self._shadow.double(), dim=-1)
        x0 = ctx.proposal
        confidence = p.gather(-1, x0[..., None])[..., 0].masked_fill(~ctx.eligible, float("-inf"))
        slot = ctx.block_start[:, None] + torch.arange(block_length, device=ctx.x.device)[None, :]
        written = ctx.committed.gather(1, slot)  # [b, B]: block slots written at an earlier step
        back = shadow.gather(-1, ctx.x.gather(1, slot)[..., None])[..., 0].masked_fill(~written, float("inf"))
        commit = torch.zeros_like(ctx.eligible)
        remask = torch.zeros_like(ctx.eligible)
        for j, row in enumerate(ctx.rows.tolist()):
            n_masked = int(ctx.eligible[j].sum())
            max_accept = min(max(int(torch.tensor(n_masked) * ACCEPT_FRACTION), ACCEPT_MIN), ACCEPT_MAX)
            above = (confidence[j] > self.config.threshold) & ctx.eligible[j]
            if int(above.sum()) > max_accept:
                above = top_k_mask(confidence[j:j + 1], _row(ctx, j), k=torch.tensor([max_accept]))[0]
            elif not bool(above.any()):
                above = top_k_mask(confidence[j:j + 1], _row(ctx, j), k=torch.tensor([1]))[0]
            commit[j] = above
            accepted = int(above.sum())
            if accepted > 1:
                low = back[j] < self.config.threshold_back
                if int(low.sum()) >= self._last_accept[row]:
                    order = torch.argsort(back[j], stable=True)[: self._last_accept[row] - 1]
                    low = torch.zeros_like(low)
                    low[order] = True
                remask[j, slot[j][low]] = True
            self._last_accept[row] = accepted
        return StepDecision(commit=commit, tokens=x0, remask=remask)


def _row(ctx: StepContext, j: int):
    """The bits of one row that `top_k_mask` reads (eligible slots; nothing suppressed: WINO ranks every slot)."""

    class _One:
        eligible = ctx.eligible[j:j + 1]
        suppressed = torch.zeros_like(ctx.eligible[j:j + 1])
        budget = torch.tensor([1])

    return _One
