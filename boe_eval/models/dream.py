"""Dream (Dream-org/Dream-v0-Base-7B, Dream-v0-Instruct-7B) behind the Denoiser contract.

Dream is initialised from an autoregressive model and keeps its convention: the raw logits at position i
predict token i + 1. Dream's own sampler (`generation_utils.py::_sample`) undoes it with
`logits = cat([logits[:, :1], logits[:, :-1]], 1)`, and so does `DreamDenoiser`, so that `logits[:, i]` predicts
token i (docs/references.md §2). For padded batches Dream's sampler passes a 4-D boolean mask
[B, 1, L, L] and `position_ids = cumsum(mask) - 1`; the remote code's attention uses the mask only when it is a
tensor (else full attention). `config.model_type` is "Dream" (capital D).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from boe_eval.errors import ConfigError
from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import LOADERS, load_remote_code_model, load_tokenizer


def shift_to_token_alignment(raw_logits: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Dream's raw logits at i predict token i + 1; return logits whose position i predicts token i.

    The first real position of a row has no predecessor and keeps its own raw logits (as position 0 does in
    Dream's sampler); with `attention_mask`, that is the first unmasked position, so a left-padded row gets
    the same logits as the row alone.
    """
    shifted = torch.cat([raw_logits[:, :1], raw_logits[:, :-1]], dim=1)
    if attention_mask is None:
        return shifted
    first = attention_mask.long().argmax(dim=1)  # first real position of each row
    index = first[:, None, None].expand(-1, 1, raw_logits.shape[-1])
    return shifted.scatter(1, index, raw_logits.gather(1, index))


def dream_attention_inputs(attention_mask: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """(4-D boolean mask [B, 1, L, L], position_ids [B, L]) for a padded batch; (None, None) without padding.

    Positions count real tokens only (`cumsum(mask) - 1`, as Dream's sampler), so a left- or right-padded
    sequence sees the positions it would see alone. Every query row may attend to every real key; unlike
    Dream's sampler the padded query rows are not masked out as well: a fully masked row gives NaN or zeros
    depending on the attention kernel, and those rows' outputs are discarded anyway.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None, None
    keep = attention_mask.bool()
    position_ids = (keep.long().cumsum(-1) - 1).clamp_min(0)
    batch, length = keep.shape
    return keep[:, None, None, :].expand(batch, 1, length, length), position_ids


class DreamDenoiser(Denoiser):
    """Dream's `DreamModel`: logits shifted back by one (see the module docstring), time-independent.

    Module paths inside `self.model` (a `DreamModel`), for ActiveQueryAttention and inspection:
    input embedding `model.embed_tokens`; attention output projection of layer i
    `model.layers[i].self_attn.o_proj`; `attention_output_modules()` lists them in layer order.
    """

    family = "dream"

    @property
    def input_embeddings(self) -> nn.Module:
        return self.model.model.embed_tokens

    def attention_output_modules(self) -> list[nn.Module]:
        """The attention output projection (`self_attn.o_proj`) of every layer, in layer order."""
        return [layer.self_attn.o_proj for layer in self.model.model.layers]

    def raw_logits(
        self,
        input_ids: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """The model's own (AR-shifted) logits: position i predicts token i + 1."""
        mask, position_ids = dream_attention_inputs(attention_mask)
        out = self.model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=position_ids,
            return_dict=True,
        )
        return out.logits

    def _forward(
        self,
        input_ids: Tensor | None,
        inputs_embeds: Tensor | None,
        attention_mask: Tensor | None,
        timestep: Tensor | None,
    ) -> Tensor:
        raw = self.raw_logits(input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return shift_to_token_alignment(raw, attention_mask)

    @property
    def supports_kv_cache(self) -> bool:
        """Dream takes `position_ids`, so a part of the canvas is placed at its positions; a part forward feeds one
        column more on the left (`kv_part_lead`): token i is predicted from the hidden state at i - 1."""
        return type(self) is DreamDenoiser

    kv_part_lead = 1
    prediction_lag = 1

    @property
    def supports_4d_mask(self) -> bool:
        """Dream's code takes a 4-D boolean mask and `position_ids` (its own sampler passes both for padded batches)."""
        return type(self) is DreamDenoiser

    def masked_logits(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        """`Denoiser.masked_logits` for Dream: the raw logits of column q predict position position_ids[q] + 1, so
        column q gets the raw logits of column q - 1 when that column holds position position_ids[q] - 1 (a run of
        consecutive positions, as a canvas), else its own (the first column of a run, as position 0 of a canvas). A
        caller that needs position p predicted from its own view feeds the column before it too (`prediction_lag`)."""
        self._check_4d_mask(attention_mask)
        raw = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         return_dict=True).logits
        follows = (position_ids[:, 1:] == position_ids[:, :-1] + 1)[..., None]
        return torch.cat([raw[:, :1], torch.where(follows, raw[:, :-1], raw[:, 1:])], dim=1)

    def part_logits(self, input_ids: Tensor, attention_mask: Tensor | None, start: int) -> Tensor:
        """Token-aligned logits of positions [start + 1, start + n) from a forward of the columns [start, start + n)
        at positions start.. (the cache supplies the other keys and the key-padding mask)."""
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
        out = self.model(input_ids=input_ids, position_ids=positions, return_dict=True)
        return out.logits[:, :-1]

    def head_positions(self, tokens: Tensor, logits_from: int | Tensor) -> Tensor:
        """One more than the window: its first token is predicted by the raw position before it."""
        start = torch.as_tensor(logits_from, device=tokens.device)
        return torch.where(start == 0, tokens, (tokens - start + 1).clamp(min=0))

    def _window_forward(self, input_ids, inputs_embeds, attention_mask, timestep, start: int) -> Tensor:
        """Token-aligned logits of positions [start, L): token i is predicted by raw position i - 1, so the head
        runs on raw positions [start - 1, L - 1). Rows whose first real position is not before `start` (left
        padding) have no predecessor there: then the full logits are computed and sliced."""
        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if attention_mask is not None and bool((attention_mask.long().argmax(dim=1) >= start).any()):
            return self._forward(input_ids, inputs_embeds, attention_mask, timestep)[:, start:]
        with self._head_window(start - 1, length):
            raw = self.raw_logits(input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        if raw.shape[1] == length:
            raw = raw[:, start - 1 :]
        return raw[:, : length - start]


def dream_mask_id(config, tokenizer, vocab_size: int) -> int:
    """config.mask_token_id (151666 in Dream-7B), else the tokenizer's mask token."""
    mask_id = getattr(config, "mask_token_id", None)
    if mask_id is None:
        mask_id = tokenizer.mask_token_id
    if mask_id is None or not 0 <= int(mask_id) < vocab_size:
        raise ConfigError(
            f"Dream mask id {mask_id!r} is missing or outside the vocabulary (size {vocab_size}): "
            "set mask_token_id in config.json"
        )
    return int(mask_id)


def load_dream(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> DreamDenoiser:
    """Dream from a local directory: `AutoModel.from_pretrained(path, trust_remote_code=True)`."""
    tokenizer = load_tokenizer(path)
    model = load_remote_code_model(path, dtype, device, ("AutoModel",))
    vocab_size = int(model.get_input_embeddings().weight.shape[0])
    return DreamDenoiser(
        model,
        tokenizer,
        mask_id=dream_mask_id(model.config, tokenizer, vocab_size),
        # Dream writes <|endoftext|> (its padding) after the answer: only the mask token is forbidden
        forbidden_ids=(),
        name=str(path),
    )


LOADERS["dream"] = load_dream

__all__ = ["DreamDenoiser", "dream_attention_inputs", "dream_mask_id", "load_dream", "shift_to_token_alignment"]
