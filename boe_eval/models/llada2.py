"""LLaDA2.x (inclusionAI/LLaDA2.0-mini, LLaDA2.0-flash, LLaDA2.1: block-diffusion MoE) behind the Denoiser contract.

The hub remote code (`modeling_llada2_moe.py`, `config.model_type == "llada2_moe"`, loaded through
`AutoModelForCausalLM` + `trust_remote_code`) is a bidirectional MoE transformer trained for *block diffusion*:
its own `generate` (docs/references.md §14) splits the sequence, prompt included, into blocks of
`block_length` (32) counted from the first prompt token and passes a block-causal 4-D attention mask: position i
attends to position j iff block(j) <= block(i), blocks of `block_length` positions. `LLaDA2Denoiser` passes the
same mask on every forward (with padded keys removed, so a padded row gets the logits of the row alone), which
matters because the hub code turns a 2-D padding mask into a *causal* mask. Logits are aligned with the input.

Token ids (LLaDA2's `generate` defaults): mask `<|mask|>` 156895, EOS `<|endoftext|>` 156892. LLaDA2's own
sampler commits, per step of a block, every masked slot whose sampled token has probability > `threshold` (0.95),
or the `k` most confident when fewer than `k` pass (k from LLaDA's uniform per-step budget), until the block has
no mask; it never gives EOS -inf confidence, so nothing is suppressed here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from boe_eval.errors import ConfigError
from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import LOADERS, load_remote_code_model, load_tokenizer, remote_code_mask_id

#: `mask_id` and `eos_id` defaults of LLaDA2's `generate`
DEFAULT_MASK_ID = 156895
MASK_TOKEN = "<|mask|>"
#: `block_length` default of LLaDA2's `generate` (the block size of its block-diffusion training)
DEFAULT_BLOCK_LENGTH = 32


def block_causal_mask(attention_mask: Tensor, block_length: int, dtype: torch.dtype) -> Tensor:
    """Additive mask [B, 1, L, L]: 0 where query i may attend key j, -inf elsewhere.

    Allowed iff key j is a real position and block(j) <= block(i), with block(p) = p // block_length counted from
    the row's first position (LLaDA2's `generate`: `tril(ones(n_blocks, n_blocks))` repeated block_length times
    along both axes, then `.log()`)."""
    length = attention_mask.shape[1]
    block = torch.arange(length, device=attention_mask.device) // block_length
    allowed = (block[None, :] <= block[:, None])[None] & attention_mask.bool()[:, None, :]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device)
    return mask.masked_fill(~allowed, float("-inf"))[:, None]


class LLaDA2Denoiser(Denoiser):
    """LLaDA2's `LLaDA2MoeModelLM` with its block-causal attention (see the module docstring), time-independent.

    Module paths inside `self.model`: input embedding `model.word_embeddings`; attention output projection of layer
    i `model.layers[i].attention.dense`; `attention_output_modules()` lists them in layer order.
    """

    family = "llada2"

    def __init__(self, *args, block_length: int = DEFAULT_BLOCK_LENGTH, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: the attention block size (positions counted from the start of the row)
        self.block_length = int(block_length)

    @property
    def input_embeddings(self) -> nn.Module:
        return self.model.model.word_embeddings

    def attention_output_modules(self) -> list[nn.Module]:
        return [layer.attention.dense for layer in self.model.model.layers]

    def _forward(
        self,
        input_ids: Tensor | None,
        inputs_embeds: Tensor | None,
        attention_mask: Tensor | None,
        timestep: Tensor | None,
    ) -> Tensor:
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        mask = block_causal_mask(attention_mask, self.block_length, self.dtype)
        position_ids = torch.arange(reference.shape[1], device=reference.device)[None].expand(reference.shape[0], -1)
        out = self.model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=position_ids,
            use_cache=False,
            return_dict=True,
        )
        return out.logits

    def describe(self) -> dict:
        return {**super().describe(), "attention_block_length": self.block_length}


def llada2_mask_id(config, tokenizer, vocab_size: int) -> int:
    """config.mask_token_id, else the tokenizer's `<|mask|>`, else its mask token, else 156895."""
    return remote_code_mask_id("LLaDA2", config, tokenizer, MASK_TOKEN, DEFAULT_MASK_ID, vocab_size)


def load_llada2(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> LLaDA2Denoiser:
    """LLaDA2 from a local directory: `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`. The
    attention block size is `block_length` in config.json when given, else 32 (LLaDA2's `generate` default)."""
    tokenizer = load_tokenizer(path)
    model = load_remote_code_model(path, dtype, device, ("AutoModelForCausalLM", "AutoModel"))
    vocab_size = int(model.get_input_embeddings().weight.shape[0])
    block_length = int(getattr(model.config, "block_length", None) or DEFAULT_BLOCK_LENGTH)
    if block_length < 1:
        raise ConfigError(f"LLaDA2 block_length {block_length} in config.json must be a positive integer")
    return LLaDA2Denoiser(
        model,
        tokenizer,
        mask_id=llada2_mask_id(model.config, tokenizer, vocab_size),
        forbidden_ids=(),  # EOS is also LLaDA2's padding and must stay writable
        block_length=block_length,
        name=str(path),
    )


LOADERS["llada2_moe"] = load_llada2

__all__ = ["LLaDA2Denoiser", "block_causal_mask", "llada2_mask_id", "load_llada2"]
