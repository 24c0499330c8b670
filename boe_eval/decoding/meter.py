"""The compute meter (docs/design.md "Meter"; paper Appendix A.3.4).

Every denoiser call goes through `MeteredDenoiser`, which counts, per sequence of the batch:
forward passes, backward passes, NFE (every denoiser invocation is one NFE, surrogate forwards
included), tokens processed (non-padding positions fed to the model) and wall time (a call's time is
shared equally among the rows that took part in it). Forward-equivalents count a backward as
`backward_cost` forwards (2 by default, the usual FLOP ratio).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from boe_eval.models.denoiser import Denoiser


@dataclass
class Meter:
    """Per-sequence compute counters for one batch."""

    batch_size: int
    backward_cost: float = 2.0
    forwards: Tensor = field(init=False)
    backwards: Tensor = field(init=False)
    nfe: Tensor = field(init=False)
    tokens: Tensor = field(init=False)
    wall_time: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.forwards = torch.zeros(self.batch_size, dtype=torch.long)
        self.backwards = torch.zeros(self.batch_size, dtype=torch.long)
        self.nfe = torch.zeros(self.batch_size, dtype=torch.long)
        self.tokens = torch.zeros(self.batch_size, dtype=torch.long)
        self.wall_time = torch.zeros(self.batch_size, dtype=torch.float64)

    @property
    def forward_equivalents(self) -> Tensor:
        return self.forwards.double() + self.backward_cost * self.backwards.double()

    def record_forward(self, rows: Tensor, tokens: Tensor, seconds: float, nfe: int = 1) -> None:
        rows = rows.cpu()
        self.forwards[rows] += 1
        self.nfe[rows] += nfe
        self.tokens[rows] += tokens.cpu().long()
        self.wall_time[rows] += seconds / max(len(rows), 1)

    def record_backward(self, rows: Tensor, seconds: float) -> None:
        rows = rows.cpu()
        self.backwards[rows] += 1
        self.wall_time[rows] += seconds / max(len(rows), 1)

    def row(self, i: int) -> dict:
        return {
            "nfe": int(self.nfe[i]),
            "forwards": int(self.forwards[i]),
            "backwards": int(self.backwards[i]),
            "forward_equivalents": float(self.forward_equivalents[i]),
            "tokens_processed": int(self.tokens[i]),
            "wall_time_s": float(self.wall_time[i]),
        }


class MeteredDenoiser:
    """The only door to the model: forwards and backwards are counted on `meter`.

    `rows` always names which sequences of the batch (indices into the meter) a call serves.
    """

    def __init__(self, denoiser: Denoiser, meter: Meter) -> None:
        self._denoiser = denoiser  # private: every model call goes through forward/grad below
        self.meter = meter

    def with_meter(self, meter: Meter) -> MeteredDenoiser:
        """The same model behind another meter (a diagnostic's calls counted apart from the run's)."""
        return MeteredDenoiser(self._denoiser, meter)

    # pass-through facts (not model calls)
    @property
    def mask_id(self) -> int:
        return self._denoiser.mask_id

    @property
    def embedding_matrix(self) -> Tensor:
        return self._denoiser.embedding_matrix

    @property
    def time_conditioned(self) -> bool:
        return self._denoiser.time_conditioned

    @property
    def forbidden_ids(self) -> tuple[int, ...]:
        """Ids that are never written (the mask token, padding): -inf in every prediction."""
        return self._denoiser.forbidden_ids

    @property
    def name(self) -> str:
        return self._denoiser.name

    @property
    def family(self) -> str:
        """The model family (`dream` shifts its query rows, `boe_eval.models.aqa.prediction_query_rows`)."""
        return getattr(self._denoiser, "family", "")

    @property
    def tokenizer(self):
        return self._denoiser.tokenizer

    def embed(self, input_ids: Tensor) -> Tensor:
        """Embedding lookup; not a denoiser evaluation, so not counted."""
        return self._denoiser.embed(input_ids)

    def active_queries(self, active, mode: str = "faithful"):
        """ActiveQueryAttention context (paper eq. 30), see `Denoiser.active_queries`; not a model call."""
        return self._denoiser.active_queries(active, mode=mode)

    def forward(
        self,
        rows: Tensor | Sequence[int],
        input_ids: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
        attention_mask: Tensor | None = None,
        timestep: Tensor | None = None,
        grad: bool = False,
        nfe: int = 1,
    ) -> Tensor:
        """One denoiser evaluation for the sequences `rows`; returns logits [b, L, V]."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        start = time.perf_counter()
        with torch.set_grad_enabled(grad):
            logits = self._denoiser.logits(
                input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, timestep=timestep
            )
        seconds = time.perf_counter() - start
        ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if attention_mask is not None:
            tokens = attention_mask.sum(dim=1)
        else:
            tokens = torch.full((ref.shape[0],), ref.shape[1], dtype=torch.long)
        self.meter.record_forward(rows, tokens, seconds, nfe=nfe)
        return logits

    __call__ = forward

    @property
    def supports_4d_mask(self) -> bool:
        """The model takes a boolean [B, 1, Q, K] attention mask and position ids (`forward_masked`)."""
        return self._denoiser.supports_4d_mask

    def forward_masked(self, rows: Tensor | Sequence[int], input_ids: Tensor, attention_mask: Tensor,
                       position_ids: Tensor) -> Tensor:
        """One denoiser evaluation under a per-query mask [b, 1, Q, K] with explicit positions (`Denoiser.masked_logits`),
        one NFE per row; tokens processed = the Q positions fed to the model."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        start = time.perf_counter()
        with torch.no_grad():
            logits = self._denoiser.masked_logits(input_ids, attention_mask, position_ids)
        tokens = torch.full((input_ids.shape[0],), input_ids.shape[1], dtype=torch.long)
        self.meter.record_forward(rows, tokens, time.perf_counter() - start)
        return logits

    def grad(self, rows: Tensor | Sequence[int], output: Tensor, inputs: Tensor) -> Tensor:
        """One backward pass: d output / d inputs (`torch.autograd.grad`), counted as a backward."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        start = time.perf_counter()
        (gradient,) = torch.autograd.grad(output, inputs)
        self.meter.record_backward(rows, time.perf_counter() - start)
        return gradient
