"""The compute meter (docs/design.md "Meter"; paper Appendix A.3.4).

Every denoiser call goes through `MeteredDenoiser`, which counts, per sequence of the batch:
forward passes, backward passes, NFE (every denoiser invocation is one NFE, surrogate forwards
included), tokens processed (non-padding positions fed to the model) and wall time (a call's time is
shared equally among the rows that took part in it). Forward-equivalents count a backward as
`backward_cost` forwards (2 by default, the usual FLOP ratio).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from boe_eval.models.denoiser import Denoiser
from boe_eval.models.flops import flop_model
from boe_eval.models.kv_cache import LayerStore, check_cache_mode, recording, reusing


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
    forward_flops: Tensor = field(init=False)
    backward_flops: Tensor = field(init=False)
    #: False when a call's FLOPs could not be counted (a model without Linear layers): the rows then say None
    flops_known: bool = True

    def __post_init__(self) -> None:
        self.forwards = torch.zeros(self.batch_size, dtype=torch.long)
        self.backwards = torch.zeros(self.batch_size, dtype=torch.long)
        self.nfe = torch.zeros(self.batch_size, dtype=torch.long)
        self.tokens = torch.zeros(self.batch_size, dtype=torch.long)
        self.wall_time = torch.zeros(self.batch_size, dtype=torch.float64)
        self.forward_flops = torch.zeros(self.batch_size, dtype=torch.float64)
        self.backward_flops = torch.zeros(self.batch_size, dtype=torch.float64)

    @property
    def forward_equivalents(self) -> Tensor:
        return self.forwards.double() + self.backward_cost * self.backwards.double()

    def record_forward(self, rows: Tensor, tokens: Tensor, seconds: float, nfe: int = 1,
                       flops: Tensor | None = None) -> None:
        rows = rows.cpu()
        self.forwards[rows] += 1
        self.nfe[rows] += nfe
        self.tokens[rows] += tokens.cpu().long()
        self.wall_time[rows] += seconds / max(len(rows), 1)
        if flops is None:
            self.flops_known = False
        else:
            self.forward_flops[rows] += flops.cpu().double()

    def record_backward(self, rows: Tensor, seconds: float, flops: Tensor | None = None) -> None:
        """A backward; `flops`: `backward_cost` times the FLOPs of the forward it differentiates."""
        rows = rows.cpu()
        self.backwards[rows] += 1
        self.wall_time[rows] += seconds / max(len(rows), 1)
        if flops is None:
            self.flops_known = False
        else:
            self.backward_flops[rows] += flops.cpu().double()

    def row(self, i: int) -> dict:
        return {
            "nfe": int(self.nfe[i]),
            "forwards": int(self.forwards[i]),
            "backwards": int(self.backwards[i]),
            "forward_equivalents": float(self.forward_equivalents[i]),
            "tokens_processed": int(self.tokens[i]),
            "wall_time_s": float(self.wall_time[i]),
            # analytic FLOPs (boe_eval.models.flops): forwards, and forwards plus backwards (backward_cost x the
            # FLOPs of the forward each differentiates)
            "forward_flops": float(self.forward_flops[i]) if self.flops_known else None,
            "flops": float(self.forward_flops[i] + self.backward_flops[i]) if self.flops_known else None,
        }


@dataclass
class StepWindow:
    """The canvas columns a decode step works on, [offset, W) (docs/design.md "Step window"): the frozen
    prefix [0, offset) (prompt tokens of every row, never written) is kept here so that a caller holding
    window-sized inputs never needs to know it."""

    prefix_ids: Tensor  #: [B, offset] canvas ids left of the window (batch rows = meter rows)
    prefix_mask: Tensor  #: [B, offset] their attention mask
    width: int  #: W, the canvas width
    #: [B] each row's own prompt length, where its window would start were it decoded alone: FLOPs are metered
    #: for that window, so a row's metered compute does not depend on the batch it lands in (None: the offset)
    row_starts: Tensor | None = None

    @property
    def offset(self) -> int:
        return int(self.prefix_ids.shape[1])


class MeteredDenoiser:
    """The only door to the model: forwards and backwards are counted on `meter`.

    `rows` always names which sequences of the batch (indices into the meter) a call serves. With a
    `window` (set by the decoding loop), inputs of the window's width (ids or embeddings) are completed
    with the frozen prefix before the model sees them and the logits come back for the window only: the
    output head runs on the window's positions alone (`Denoiser.logits(logits_from=...)`).
    """

    def __init__(
        self, denoiser: Denoiser, meter: Meter, window: StepWindow | None = None, rows_are_canvas_rows: bool = True,
        cache: str = "none",
    ) -> None:
        self._denoiser = denoiser  # private: every model call goes through forward/grad below
        #: KV cache mode (`boe_eval.models.kv_cache`): "none", "prefix" or "dual"
        self.cache = check_cache_mode(cache)
        if self.cache != "none" and not denoiser.supports_kv_cache:
            from boe_eval.errors import ConfigError

            raise ConfigError(f"cache={self.cache} needs a model whose forward of a part of the canvas can be placed at "
                              f"its positions (BERT-style masked LMs, LLaDA, Dream); {denoiser.name!r} is not one")
        self._block: tuple[int, int] | None = None  #: canvas columns [s, e) of the current block (all rows)
        self._row_blocks: tuple[Tensor, Tensor] | None = None  #: each canvas row's own block start and end
        self._store: LayerStore | None = None  #: keys/values of the block's first forward
        self._store_rows: dict[int, int] = {}  #: canvas row -> its row in the store
        self._store_logits: Tensor | None = None  #: the window's logits of the block's first forward
        self._store_mask: Tensor | None = None  #: its [b, W] padding mask
        self.meter = meter
        self.window = window if window is not None and window.offset > 0 else None
        self._graph_flops: dict[int, float] = {}  #: meter row -> FLOPs of its last forward with grad
        flop_model(denoiser)  # probed now, outside any ActiveQueryAttention context a later call may run in
        #: False behind another meter: its rows index that meter, and a window-sized forward must name the
        #: canvas rows whose prefix completes it (`canvas_rows`)
        self._rows_are_canvas_rows = rows_are_canvas_rows

    def with_meter(self, meter: Meter) -> MeteredDenoiser:
        """The same model behind another meter (a diagnostic's calls counted apart from the run's); its `rows`
        index `meter`, so window-sized forwards through it pass `canvas_rows`."""
        return MeteredDenoiser(self._denoiser, meter, self.window, rows_are_canvas_rows=False)

    def start_block(self, block_start: Tensor, block_end: Tensor) -> None:
        """The decoding loop's notice that a block starts (canvas columns per row): with a KV cache, the next
        forward of the whole canvas is made in full and its keys/values kept for the block's later steps."""
        if self.cache == "none":
            return
        self._block = (int(block_start.min()), int(block_end.max()))
        self._row_blocks = (block_start.cpu().clone(), block_end.cpu().clone())  #: per canvas row, for metering
        self._store, self._store_rows, self._store_logits, self._store_mask = None, {}, None, None

    @property
    def offset(self) -> int:
        """Canvas columns left of the step window (0: no window)."""
        return 0 if self.window is None else self.window.offset

    def canvas_columns(self, window_tensor: Tensor) -> Tensor:
        """A window-sized [b, W - offset, ...] tensor laid out over the whole canvas width, zero (False) on the
        prefix (e.g. ActiveQueryAttention's active query rows, which index the model's own positions)."""
        if self.window is None or window_tensor.shape[1] != self.window.width - self.offset:
            return window_tensor
        pad = torch.zeros((window_tensor.shape[0], self.offset, *window_tensor.shape[2:]), dtype=window_tensor.dtype,
                          device=window_tensor.device)
        return torch.cat([pad, window_tensor], dim=1)

    def canvas_ids(self, canvas_rows: Tensor | Sequence[int], window_ids: Tensor) -> Tensor:
        """The whole canvas [b, W] of `canvas_rows` with `window_ids` [b, W - offset] in the window: for a policy
        that needs whole-canvas inputs (its own 4-D attention mask); such a forward returns whole-canvas logits."""
        if self.window is None:
            return window_ids
        index = torch.as_tensor(canvas_rows, dtype=torch.long).to(self.window.prefix_ids.device)
        return torch.cat([self.window.prefix_ids[index].to(window_ids.device), window_ids], dim=1)

    def _complete(self, rows: Tensor, canvas_rows, input_ids, inputs_embeds, attention_mask):
        """(ids, embeds, mask, logits_from): window-sized inputs completed with the prefix of `canvas_rows`
        (default: `rows`, when they index the canvas)."""
        window = self.window
        ref = input_ids if input_ids is not None else inputs_embeds
        if window is None or ref.shape[1] != window.width - window.offset:
            return input_ids, inputs_embeds, attention_mask, 0
        if canvas_rows is None:
            if not self._rows_are_canvas_rows:
                raise RuntimeError("a window-sized forward behind another meter must name its canvas_rows")
            canvas_rows = rows
        index = torch.as_tensor(canvas_rows, dtype=torch.long).to(window.prefix_ids.device)
        prefix = window.prefix_ids[index].to(ref.device)
        if input_ids is not None:
            input_ids = torch.cat([prefix, input_ids], dim=1)
        else:
            with torch.no_grad():
                embedded = self._denoiser.embed(prefix).to(inputs_embeds.dtype)
            inputs_embeds = torch.cat([embedded, inputs_embeds], dim=1)
        if attention_mask is not None:
            if attention_mask.dim() != 2:
                raise ValueError(
                    f"a window-sized forward takes a [b, L] padding mask (got shape {tuple(attention_mask.shape)}): "
                    "pass whole-canvas inputs (model.canvas_ids) with a mask of your own"
                )
            attention_mask = torch.cat([window.prefix_mask[index].to(attention_mask), attention_mask], dim=1)
        return input_ids, inputs_embeds, attention_mask, window.offset

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
        canvas_rows: Tensor | Sequence[int] | None = None,
    ) -> Tensor:
        """One denoiser evaluation for the sequences `rows`; returns logits [b, L, V] for inputs of L positions
        (the window's width: the logits of the window). `canvas_rows`: which canvas rows the inputs are, when
        `rows` index another meter (`with_meter`)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        start = time.perf_counter()
        input_ids, inputs_embeds, attention_mask, logits_from = self._complete(
            rows, canvas_rows, input_ids, inputs_embeds, attention_mask
        )
        cache_rows = self._cache_rows(rows, canvas_rows, input_ids, grad, timestep)
        if cache_rows is not None and self._store is not None:
            return self._cached_forward(rows, cache_rows, input_ids, attention_mask, logits_from, start)
        with torch.set_grad_enabled(grad), (recording(LayerStore()) if cache_rows is not None
                                            else contextlib.nullcontext()) as store:
            logits = self._denoiser.logits(
                input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, timestep=timestep,
                logits_from=logits_from,
            )
        if store is not None:  # the block's first forward: its keys/values serve the block's later steps
            self._store, self._store_logits = store, logits.detach().clone()
            self._store_rows = {int(r): i for i, r in enumerate(cache_rows.tolist())}
            self._store_mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids)).bool()
        seconds = time.perf_counter() - start
        ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if attention_mask is not None:
            tokens = attention_mask.sum(dim=1).cpu()
        else:
            tokens = torch.full((ref.shape[0],), ref.shape[1], dtype=torch.long)
        flops = self._forward_flops(tokens, logits_from, canvas_rows if canvas_rows is not None else rows)
        if grad and flops is not None:
            self._graph_flops.update(zip(rows.tolist(), flops.tolist()))
        self.meter.record_forward(rows, tokens, seconds, nfe=nfe, flops=flops)
        return logits

    def _cache_rows(self, rows: Tensor, canvas_rows, input_ids: Tensor | None, grad: bool,
                    timestep: Tensor | None) -> Tensor | None:
        """The canvas rows of a forward the KV cache serves (None: a plain forward): token ids of the whole canvas
        (after `_complete`), no gradient, no time input, a block started; later forwards of the block only for
        rows the block's first forward kept."""
        if self.cache == "none" or self._block is None or grad or input_ids is None or timestep is not None:
            return None
        if self.window is not None and input_ids.shape[1] != self.window.width:
            return None
        canvas = torch.as_tensor(canvas_rows if canvas_rows is not None else rows, dtype=torch.long).cpu()
        if canvas_rows is None and not self._rows_are_canvas_rows:
            return None
        if self._store is not None:
            width = self._store.keys[0].shape[2] if self._store.keys else -1
            if input_ids.shape[1] != width or any(int(r) not in self._store_rows for r in canvas.tolist()):
                return None
        return canvas

    def _cached_forward(self, rows: Tensor, cache_rows: Tensor, input_ids: Tensor, attention_mask: Tensor | None,
                        logits_from: int, start_time: float) -> Tensor:
        """A later step of the block: only the columns [s, W) (prefix) or [s, e) (dual) are fed to the model,
        their queries attending to the kept keys/values elsewhere. The window's logits outside the forwarded part
        are those of the block's first forward (what Fast-dLLM's samplers would see; they read only the block).
        Metered: tokens = the real positions fed; FLOPs for those queries over every real key of the row."""
        width = input_ids.shape[1]
        s, e = self._block
        s = max(s, logits_from)
        e = width if self.cache == "prefix" else min(e, width)
        fed = max(s - self._denoiser.kv_part_lead, 0)  #: first column fed (Dream: one before s)
        s = fed + self._denoiser.kv_part_lead
        index = torch.tensor([self._store_rows[int(r)] for r in cache_rows.tolist()], dtype=torch.long)
        mask = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
        kept = self._store_mask[index.to(self._store_mask.device)].to(mask.device)
        key_mask = torch.cat([kept[:, :fed], mask[:, fed:e], kept[:, e:]], dim=1)
        part_mask = attention_mask[:, fed:e] if attention_mask is not None else None
        store_index = index.to(self._store.keys[0].device) if self._store.keys else index
        with torch.no_grad(), reusing(self._store, store_index, fed, e, key_mask, self._denoiser.kv_rope_shift) as calls:
            part = self._denoiser.part_logits(input_ids[:, fed:e], part_mask, fed)
        if not calls[0]:
            raise RuntimeError(f"{self.name}: the KV cache intercepted no attention call (the model does not compute "
                               "attention with torch.nn.functional.scaled_dot_product_attention)")
        logits = self._store_logits[index.to(self._store_logits.device)].clone()
        logits[:, s - logits_from:e - logits_from] = part.to(logits.dtype)
        seconds = time.perf_counter() - start_time
        tokens = self._own_fed_tokens(cache_rows, mask, width)
        model = flop_model(self._denoiser)
        flops = None if model is None else model.forward_flops(tokens, key_mask.sum(dim=1).cpu(), tokens)
        self.meter.record_forward(rows, tokens, seconds, flops=flops)
        return logits

    def _own_fed_tokens(self, cache_rows: Tensor, mask: Tensor, width: int) -> Tensor:
        """Real positions [b] a cached forward feeds for each row when decoded alone: [s_r - lead, W) (prefix) or
        [s_r - lead, e_r) (dual) from the row's own block [s_r, e_r). The batch feeds from its earliest block start,
        a few columns more for rows whose block starts later; they are not metered, so a row's tokens and FLOPs do
        not depend on the batch it lands in (as `StepWindow.row_starts` for the head)."""
        starts, ends = (t[cache_rows.cpu()] for t in self._row_blocks)
        first = (starts - self._denoiser.kv_part_lead).clamp(min=0)
        last = torch.full_like(ends, width) if self.cache == "prefix" else ends.clamp(max=width)
        columns = torch.arange(width)[None, :]
        own = (columns >= first[:, None]) & (columns < last[:, None])
        return (mask.cpu() & own).sum(dim=1)

    def _forward_flops(self, tokens: Tensor, logits_from: int, canvas_rows) -> Tensor | None:
        """Analytic FLOPs [b] of a forward over rows of `tokens` real positions (None: not countable). With a step
        window the output head is counted over each row's own window (`StepWindow.row_starts`), the head positions
        it has when decoded alone, whatever the shortest prompt of its batch."""
        model = flop_model(self._denoiser)
        if model is None:
            return None
        start: int | Tensor = logits_from
        if logits_from and self.window is not None and self.window.row_starts is not None:
            index = torch.as_tensor(canvas_rows, dtype=torch.long).to(self.window.row_starts.device)
            start = self.window.row_starts[index].cpu()
        return model.forward_flops(tokens, tokens, self._denoiser.head_positions(tokens, start).cpu())

    __call__ = forward

    @property
    def supports_4d_mask(self) -> bool:
        """The model takes a boolean [B, 1, Q, K] attention mask and position ids (`forward_masked`)."""
        return self._denoiser.supports_4d_mask

    def forward_masked(self, rows: Tensor | Sequence[int], input_ids: Tensor, attention_mask: Tensor,
                       position_ids: Tensor) -> Tensor:
        """One denoiser evaluation under a per-query mask [b, 1, Q, K] with explicit positions (`Denoiser.masked_logits`),
        one NFE per row. Tokens processed = the row's real columns n (those some query may attend to: padding keys
        are hidden from every query); FLOPs = `flops.py`'s formula for n queries over n keys with the head on all n
        (the dense kernel computes every query-key pair; what the mask hides is not subtracted)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        start = time.perf_counter()
        with torch.no_grad():
            logits = self._denoiser.masked_logits(input_ids, attention_mask, position_ids)
        tokens = attention_mask[:, 0].any(dim=1).sum(dim=1).cpu()
        model = flop_model(self._denoiser)
        flops = None if model is None else model.forward_flops(tokens, tokens, tokens)
        self.meter.record_forward(rows, tokens, time.perf_counter() - start, flops=flops)
        return logits

    @property
    def prediction_lag(self) -> int:
        """The token at position p is predicted by the query at p - prediction_lag (`Denoiser.prediction_lag`)."""
        return self._denoiser.prediction_lag

    def grad(self, rows: Tensor | Sequence[int], output: Tensor, inputs: Tensor) -> Tensor:
        """One backward pass: d output / d inputs (`torch.autograd.grad`), counted as a backward."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        start = time.perf_counter()
        (gradient,) = torch.autograd.grad(output, inputs)
        graph = [self._graph_flops.get(r) for r in rows.tolist()]
        flops = None if None in graph else self.meter.backward_cost * torch.tensor(graph, dtype=torch.float64)
        self.meter.record_backward(rows, time.perf_counter() - start, flops=flops)
        return gradient
