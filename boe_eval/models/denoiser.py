"""The denoiser contract (docs/design.md "Denoiser"): everything model-specific lives behind this class.

`logits(...)[:, i]` predicts token i of the canvas, for every supported architecture.
Samplers and the decoding loop never touch the underlying `transformers` model directly; they call
it through `boe_eval.decoding.meter.MeteredDenoiser`, which counts every invocation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

#: model types (config.json, lower case) whose denoiser takes a per-query attention mask and position ids, so that
#: `Denoiser.masked_logits` works: BERT's `get_extended_attention_mask` accepts a [B, Q, K] mask; Dream's code takes a
#: 4-D boolean mask and `position_ids`; LLaDA's takes neither, so its denoiser injects the mask into the attention
#: kernel and rotates queries and keys to the positions (`models/rope_positions.py`). Read by the pre-flight before a
#: model loads (samplers that declare `needs_4d_mask`, e.g. WINO's shadow-block verification).
FOUR_D_MASK_MODEL_TYPES = frozenset({"bert", "llada", "dream"})


def relative_position_encoding(config) -> str | None:
    """The relative position encoding a BERT-style config asks for (`position_embedding_type` relative_key or
    relative_key_query, Shaw et al. 2018), or None for absolute positions. `config` is a config object or the
    config.json dict. Such a model ignores `position_ids` and computes attention itself (no SDPA kernel)."""
    kind = config.get("position_embedding_type") if isinstance(config, dict) else getattr(
        config, "position_embedding_type", None)
    return None if kind in ("absolute", None) else str(kind)


def _per_query_mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """A boolean [B, 1, Q, K] mask as BERT's forward takes it: transformers 4.x expands a [B, Q, K] 0/1 mask itself
    (`get_extended_attention_mask`); 5.x treats a 3-D mask as padding and takes a prepared 4-D mask as it is, so it
    gets the additive form (0 where allowed, the dtype's minimum elsewhere), which its eager and SDPA attention add."""
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        return allowed[:, 0].long()
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


class Denoiser:
    """A masked-diffusion denoiser D_theta(x_t, t) -> per-position token logits (paper eq. 5).

    The default implementation wraps any `AutoModelForMaskedLM`-style module whose forward accepts
    `input_ids` or `inputs_embeds` plus a 2-D `attention_mask` and returns `.logits` aligned with the
    input. Architecture-specific subclasses (LLaDA, Dream, MDLM) override `_forward`.
    """

    #: registry name of the architecture family (recorded in result rows)
    family: str = "masked_lm"
    #: see __init__ (a class default too, for subclasses that build themselves differently)
    inject_padding_mask: bool = False

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        mask_id: int,
        suppress_ids: Sequence[int] = (),
        forbidden_ids: Sequence[int] = (),
        honours_padding_mask: bool = True,
        time_conditioned: bool = False,
        name: str = "",
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.mask_id = int(mask_id)
        #: tokens that may be predicted but get -inf confidence (LLaDA's EOS/EoT, docs/references.md §1.4)
        self.suppress_ids = tuple(int(i) for i in suppress_ids)
        #: tokens that may never be written (the mask token itself, padding)
        self.forbidden_ids = tuple(sorted({int(i) for i in forbidden_ids} | {self.mask_id}))
        #: False for models whose forward ignores `attention_mask` (LLaDA's remote code); the loop
        #: then batches only prompts of equal length so results never depend on batch composition.
        self.honours_padding_mask = honours_padding_mask
        #: True when the padding mask is injected into the attention kernel because the model's own code drops
        #: it (`boe_eval.models.mask_injection`); set by the load-time probe (`padding_probe.settle_padding_mask`)
        self.inject_padding_mask = False
        #: True for MDLM-style denoisers that take the diffusion time as input.
        self.time_conditioned = time_conditioned
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__

    # ----------------------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    @property
    def embedding_matrix(self) -> Tensor:
        """E in R^{|V| x d} (paper eq. 10)."""
        return self.input_embeddings.weight

    @property
    def vocab_size(self) -> int:
        return int(self.embedding_matrix.shape[0])

    @property
    def max_length(self) -> int | None:
        """Longest canvas the model accepts (its position table), or None when unbounded (RoPE)."""
        config = getattr(self.model, "config", None)
        for key in ("max_position_embeddings", "max_sequence_length", "n_positions"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def eos_id(self) -> int | None:
        return getattr(self.tokenizer, "eos_token_id", None)

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        if pad is None:
            pad = self.eos_id if self.eos_id is not None else self.mask_id
        return int(pad)

    # ----------------------------------------------------------------------------- contract
    def embed(self, input_ids: Tensor) -> Tensor:
        """Input embeddings [B, L, d] for token ids (what `inputs_embeds` expects)."""
        return self.input_embeddings(input_ids)

    def logits(
        self,
        input_ids: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
        attention_mask: Tensor | None = None,
        timestep: Tensor | None = None,
        logits_from: int = 0,
    ) -> Tensor:
        """Logits [B, L - logits_from, V] with `logits[:, i]` predicting token `logits_from + i`.

        `timestep` (diffusion time in [0, 1], one per row) is used by time-conditioned denoisers and
        ignored by time-independent ones such as LLaDA. `logits_from` > 0 asks for the positions
        [logits_from, L) only: the whole input is still encoded (every position attends to every other),
        but the output head runs on those positions only where the architecture allows it
        (`_head_window`), else the full logits are computed and sliced.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if not 0 <= logits_from < length:
            raise ValueError(f"logits_from={logits_from} must lie in [0, {length})")
        with self._padding_injection(attention_mask):
            if logits_from == 0:
                return self._forward(input_ids, inputs_embeds, attention_mask, timestep)
            return self._window_forward(input_ids, inputs_embeds, attention_mask, timestep, logits_from)

    def _window_forward(
        self,
        input_ids: Tensor | None,
        inputs_embeds: Tensor | None,
        attention_mask: Tensor | None,
        timestep: Tensor | None,
        start: int,
    ) -> Tensor:
        """`_forward` with the output head applied to positions [start, L) only (see `logits`)."""
        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        with self._head_window(start, length):
            logits = self._forward(input_ids, inputs_embeds, attention_mask, timestep)
        return logits[:, start:] if logits.shape[1] == length else logits

    def head_positions(self, tokens: Tensor, logits_from: int | Tensor) -> Tensor:
        """Positions [b] the output head runs on for rows of `tokens` real positions asked for logits from
        `logits_from` on (one for all rows, or [b]; the FLOP count, `boe_eval.models.flops`): all of them when the
        head cannot be cut."""
        if self._head() is None:
            return tokens
        start = torch.as_tensor(logits_from, device=tokens.device)
        return torch.where(start == 0, tokens, (tokens - start).clamp(min=0))

    def _head(self) -> tuple[nn.Module, str] | None:
        """Where the per-position hidden states enter the output head: (module, "input") to slice a module's
        input [B, L, d] (default: the output embedding, `get_output_embeddings()`, when it is a Linear), or
        (module, "output") to slice a position-wise module's output. None: no head slicing (full + slice)."""
        getter = getattr(self.model, "get_output_embeddings", None)
        head = getter() if callable(getter) else None
        return (head, "input") if isinstance(head, nn.Linear) else None

    @contextlib.contextmanager
    def _head_window(self, start: int, length: int) -> Iterator[None]:
        """Inside the context the head sees positions [start, L) only (hidden states [B, L, d] are sliced
        where they enter it); a tensor of another shape passes unchanged, so a model that calls its head
        differently falls back to full logits."""
        head = self._head()
        if head is None:
            yield
            return
        module, where = head

        def cut(hidden):
            if isinstance(hidden, Tensor) and hidden.dim() == 3 and hidden.shape[1] == length:
                return hidden[:, start:]
            return hidden

        if where == "input":
            handle = module.register_forward_pre_hook(lambda _m, args: (cut(args[0]),) + tuple(args[1:]) if args else None)
        else:
            handle = module.register_forward_hook(lambda _m, _args, output: cut(output))
        try:
            yield
        finally:
            handle.remove()

    def _padding_injection(self, attention_mask: Tensor | None):
        """The injected key-padding mask for this forward when the model's own code drops it, else nothing."""
        if not self.inject_padding_mask or attention_mask is None or bool(attention_mask.all()):
            return contextlib.nullcontext()
        from boe_eval.models.mask_injection import injected_attention_mask

        return injected_attention_mask(attention_mask.bool())

    @contextlib.contextmanager
    def restricted_attention(self, allowed: Tensor) -> Iterator:
        """Inside the context, the model's attention is restricted to `allowed`: [B, K] key padding or a general
        boolean [B, 1, Q, K] mask (query q of sequence b attends to key k iff allowed[b, 0, q, k]), combined with
        the padding mask. Raises RuntimeError when a forward ran inside but no attention call took the mask (the
        model does not compute attention with `F.scaled_dot_product_attention`). See `models/mask_injection.py`."""
        from boe_eval.models.mask_injection import injected_attention_mask

        forwards = [0]

        def count(_module, _args):
            forwards[0] += 1

        handle = self.model.register_forward_pre_hook(count)
        try:
            with injected_attention_mask(allowed) as record:
                yield record
        finally:
            handle.remove()
        if forwards[0] and not record.calls:
            raise RuntimeError(
                f"{self.name}: restricted_attention intercepted no attention call in {forwards[0]} forward(s): the "
                "model does not compute attention with torch.nn.functional.scaled_dot_product_attention"
            )

    @property
    def padding_mask(self) -> str:
        """How padding is kept out of attention: "model" (its own code), "injected" (mask injection) or
        "ignored" (neither: such a model is batched with equal-length prompts only). Recorded in result rows."""
        if self.inject_padding_mask:
            return "injected"
        return "model" if self.honours_padding_mask else "ignored"

    def _forward(
        self,
        input_ids: Tensor | None,
        inputs_embeds: Tensor | None,
        attention_mask: Tensor | None,
        timestep: Tensor | None,
    ) -> Tensor:
        out = self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return out.logits

    # ----------------------------------------------------------------------------- KV cache (models/kv_cache.py)
    @property
    def supports_kv_cache(self) -> bool:
        """True if a forward of the columns [s, e) alone can be placed at its true positions (`part_logits`):
        BERT-style models (absolute positions via `position_ids`) and LLaDA (RoPE shifted by `kv_rope_shift`)."""
        return self.supports_4d_mask

    #: (q, k, s) -> q, k rotated on by s positions, for RoPE models whose code numbers a forward's positions from 0
    kv_rope_shift = None
    #: columns left of the first position whose logits a part forward must give that it also feeds (Dream: 1, its
    #: logits at i come from the hidden state at i - 1); `part_logits` returns logits from `start + kv_part_lead` on
    kv_part_lead: int = 0
    #: the token at position p is predicted by the query at position p - prediction_lag (Dream: 1, AR-initialised);
    #: a 4-D-mask forward that must predict positions [s, e) from its own queries feeds [s - prediction_lag, e)
    prediction_lag: int = 0

    def part_logits(self, input_ids: Tensor, attention_mask: Tensor | None, start: int) -> Tensor:
        """Logits [b, n, V] of a forward of the canvas columns [start, start + n) alone (the KV cache puts the kept
        keys/values around them): here with `position_ids` start..start + n - 1."""
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
        with self._padding_injection(attention_mask):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions)
        return out.logits

    @property
    def supports_4d_mask(self) -> bool:
        """True if `masked_logits` can run: the model takes a per-query attention mask and position ids (here: the
        generic masked-LM denoiser on a BERT with absolute positions; a BERT with relative position encodings,
        `position_embedding_type` != "absolute", ignores position ids; LLaDA and Dream have their own)."""
        config = getattr(self.model, "config", None)
        model_type = str(getattr(config, "model_type", "")).lower()
        return (type(self)._forward is Denoiser._forward and model_type == "bert"
                and relative_position_encoding(config) is None)

    def masked_logits(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        """Logits [B, Q, V] under a boolean attention mask [B, 1, Q, K] (query i attends to key j where True; Q = K =
        the width of `input_ids`) with explicit `position_ids` [B, Q], e.g. a shadow copy of a block placed after
        the canvas with the block's positions (WINO). `logits[:, q]` predicts the token at position_ids[q] (Dream's
        shift is undone: `DreamDenoiser.masked_logits`). Only where `supports_4d_mask`."""
        self._check_4d_mask(attention_mask)
        out = self.model(input_ids=input_ids, attention_mask=_per_query_mask(attention_mask, self.dtype),
                         position_ids=position_ids, token_type_ids=torch.zeros_like(input_ids))
        return out.logits

    def _check_4d_mask(self, attention_mask: Tensor) -> None:
        if not self.supports_4d_mask:
            raise ValueError(f"{self.name!r} does not take a 4-D attention mask (supports_4d_mask is False)")
        if attention_mask.dim() != 4 or attention_mask.shape[1] != 1 or attention_mask.dtype != torch.bool:
            raise ValueError(f"attention_mask must be a boolean [B, 1, Q, K] tensor, got {tuple(attention_mask.shape)} "
                             f"{attention_mask.dtype}")

    @contextlib.contextmanager
    def active_queries(self, active, mode: str = "faithful") -> Iterator:
        """ActiveQueryAttention (paper eq. 30): inside the context, gradients flow only through the
        attention outputs of the rows marked in `active` ([B, L] bool, or an `aqa.ActiveQueries` filled in
        before the backward). `None` leaves the model unchanged. `mode` is "faithful" (eq. 30 as written)
        or "efficient" (backward computed for the active rows only); see `boe_eval.models.aqa`.
        Yields the `aqa.ActiveQueries` in use (None when `active` is None).
        """
        if active is None:
            yield None
            return
        from boe_eval.models import aqa  # imported lazily: optional machinery

        with aqa.active_query_attention(self, active, mode=mode) as holder:
            yield holder

    def describe(self) -> dict:
        """Facts recorded in every result row."""
        return {
            "model": self.name,
            "model_family": self.family,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "vocab_size": self.vocab_size,
            "mask_id": self.mask_id,
            "padding_mask": self.padding_mask,
        }
