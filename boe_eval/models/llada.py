"""LLaDA (GSAI-ML/LLaDA-8B-Base, LLaDA-8B-Instruct, LLaDA-1.5) behind the Denoiser contract.

The hub remote code (`modeling_llada.py`, loaded with `AutoModel` + `trust_remote_code`) wraps `LLaDAModel` in
`LLaDAModelLM`, whose `forward(input_ids, inputs_embeds, attention_mask, ...)` hands `inputs_embeds` on as
`LLaDAModel.forward(..., input_embeddings=...)`. Its logits are aligned with the input (no shift). The hub
code as measured (transformers 4.57) builds an attention bias from `attention_mask` but never applies it, so
padded positions are attended to: the load-time probe (boe_eval.models.padding_probe) reports False, switches on
mask injection (boe_eval.models.mask_injection: the key-padding mask handed to its SDPA calls) and keeps it if
the probe then passes, so prompts of any length share a batch; else the loop batches only equal lengths. Token ids (docs/references.md §1): mask 126336, EOS/pad
`<|endoftext|>` 126081, end of turn `<|eot_id|>` 126348.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import (
    LOADERS,
    load_remote_code_model,
    load_tokenizer,
    remote_code_mask_id,
    single_token_id,
)

#: LLaDA's mask token `<|mdm_mask|>` (hard-coded as `mask_id=126336` in LLaDA's generate.py)
DEFAULT_MASK_ID = 126336
MASK_TOKEN = "<|mdm_mask|>"
#: EOS (126081) and end of turn (126348): predicted, but given -inf confidence (LLaDA's
#: `confidence_eos_eot_inf` as intended, docs/references.md §1.4 / §11.1)
SUPPRESSED_TOKENS = ("<|endoftext|>", "<|eot_id|>")


class LLaDADenoiser(Denoiser):
    """LLaDA's `LLaDAModelLM`: logits aligned with the input, time-independent (`timestep` is ignored).

    Module paths inside `self.model` (an `LLaDAModelLM`), for ActiveQueryAttention and inspection:
    input embedding `model.transformer.wte`; attention output projection of layer i
    `model.transformer.blocks[i].attn_out` (`model.transformer.block_groups[g][j].attn_out` when the
    checkpoint groups blocks); `attention_output_modules()` lists them in layer order.
    """

    family = "llada"

    @property
    def transformer(self) -> nn.ModuleDict:
        return self.model.model.transformer

    @property
    def input_embeddings(self) -> nn.Module:
        return self.transformer.wte

    def attention_output_modules(self) -> list[nn.Module]:
        """The attention output projection (`attn_out`) of every block, in layer order."""
        if "blocks" in self.transformer:
            blocks = list(self.transformer.blocks)
        else:
            blocks = [block for group in self.transformer.block_groups for block in group]
        return [block.attn_out for block in blocks]

    def _head(self) -> tuple[nn.Module, str]:
        """The final norm `ln_f` (position-wise): its output is sliced, so the head (`ff_out`, or the tied `wte`
        applied with `F.linear` when `weight_tying`) runs on the window only."""
        return self.transformer.ln_f, "output"

    @property
    def supports_kv_cache(self) -> bool:
        """LLaDA's code rotates positions 0..n-1 of a forward without `past_key_values`; the cache rotates the fresh
        queries and keys on by the part's start (`kv_rope_shift`), with the config's `rope_theta`."""
        return type(self) is LLaDADenoiser and getattr(self.model.config, "rope", True) is not False

    @property
    def kv_rope_shift(self):
        from boe_eval.models.kv_cache import rope_shift

        return rope_shift(float(getattr(self.model.config, "rope_theta", 10000.0)))

    def part_logits(self, input_ids: Tensor, attention_mask: Tensor | None, start: int) -> Tensor:
        with self._padding_injection(attention_mask):
            return self._forward(input_ids, None, attention_mask, None)

    @property
    def supports_4d_mask(self) -> bool:
        """LLaDA's code takes neither a per-query mask nor positions: the mask is injected into its attention kernel
        (`mask_injection`) and its queries and keys are rotated on from the column numbers its code uses to
        `position_ids` (`rope_positions.repositioned`, the config's `rope_theta`). RoPE checkpoints only."""
        return type(self) is LLaDADenoiser and getattr(self.model.config, "rope", True) is not False

    def masked_logits(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        """`Denoiser.masked_logits` for LLaDA (see `supports_4d_mask`): the reference's modified LLaDA code
        (WINO's `decoding_wino`) takes `attention_mask` [B, 1, Q, K] and `position_ids` itself; the hub code does not."""
        from boe_eval.models.mask_injection import injected_attention_mask
        from boe_eval.models.rope_positions import repositioned

        self._check_4d_mask(attention_mask)
        columns = torch.arange(input_ids.shape[1], device=position_ids.device)
        shift = position_ids - columns[None, :]
        theta = float(getattr(self.model.config, "rope_theta", 10000.0))
        with injected_attention_mask(attention_mask) as record, repositioned(shift, theta) as rotated:
            logits = self._forward(input_ids, None, None, None)
        if not record.calls or rotated[0] != record.calls:
            raise RuntimeError(f"{self.name}: the 4-D mask reached {record.calls} and the positions {rotated[0]} "
                               "attention calls: the model does not attend through "
                               "torch.nn.functional.scaled_dot_product_attention over its own columns")
        return logits

    def _forward(
        self,
        input_ids: Tensor | None,
        inputs_embeds: Tensor | None,
        attention_mask: Tensor | None,
        timestep: Tensor | None,
    ) -> Tensor:
        out = self.model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            use_cache=False,
            return_dict=True,
        )
        return out.logits


def llada_mask_id(config, tokenizer, vocab_size: int) -> int:
    """config.mask_token_id, else the tokenizer's `<|mdm_mask|>`, else its mask token, else 126336."""
    return remote_code_mask_id("LLaDA", config, tokenizer, MASK_TOKEN, DEFAULT_MASK_ID, vocab_size)


def llada_suppressed_ids(tokenizer) -> list[int]:
    """EOS and EoT ids, read from the tokenizer (those it does not know are left out)."""
    ids = [single_token_id(tokenizer, token) for token in SUPPRESSED_TOKENS]
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return sorted({i for i in ids if i is not None})


def load_llada(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> LLaDADenoiser:
    """LLaDA from a local directory: `AutoModel.from_pretrained(path, trust_remote_code=True)`."""
    tokenizer = load_tokenizer(path)
    model = load_remote_code_model(path, dtype, device, ("AutoModel", "AutoModelForCausalLM"))
    vocab_size = int(model.get_input_embeddings().weight.shape[0])
    return LLaDADenoiser(
        model,
        tokenizer,
        mask_id=llada_mask_id(model.config, tokenizer, vocab_size),
        suppress_ids=llada_suppressed_ids(tokenizer),
        # padding is EOS in LLaDA, which the model must be able to write: only the mask token is forbidden
        forbidden_ids=(),
        honours_padding_mask=False,  # until the load-time probe says otherwise
        name=str(path),
    )


LOADERS["llada"] = load_llada

__all__ = ["LLaDADenoiser", "llada_mask_id", "llada_suppressed_ids", "load_llada"]
