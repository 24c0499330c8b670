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
    ) -> Tensor:
        """Logits [B, L, V] with `logits[:, i]` predicting token i.

        `timestep` (diffusion time in [0, 1], one per row) is used by time-conditioned denoisers and
        ignored by time-independent ones such as LLaDA.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        with self._padding_injection(attention_mask):
            return self._forward(input_ids, inputs_embeds, attention_mask, timestep)

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
