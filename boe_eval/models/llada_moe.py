"""LLaDA-MoE (inclusionAI/LLaDA-MoE-7B-A1B-Base, -Instruct: a masked-diffusion MoE, 7B total, about 1B active) behind
the Denoiser contract.

The hub remote code (`modeling_lladamoe.py`, class `LLaDAMoEModelLM`, loaded through `AutoModelForCausalLM` +
`trust_remote_code`; docs/references.md §14) is OLMoE's modelling code made bidirectional: RoPE, QK RMSNorm,
softmax top-k routing without renormalisation, an optional shared expert. Its config.json says `model_type:
"llada"`, like dense LLaDA's, so the loader is chosen by `architectures` (`ARCHITECTURE_LOADERS`). Logits are aligned
with the input (no shift). Every attention layer drops the attention mask (full attention whatever is passed), so
the load-time probe (boe_eval.models.padding_probe) finds padding attended to and switches on mask injection (the
key-padding mask handed to its SDPA calls), which it keeps when the probe then passes; else the loop batches only
prompts of equal length.

Token ids (the model card's `generate(..., mask_id=156895)`; LLaDA2's tokenizer): mask `<|mask|>` 156895, EOS and
padding `<|endoftext|>` 156892. The model card's `generate` is LLaDA's (low-confidence remasking, semi-autoregressive
blocks) with that mask id; it does not give EOS -inf confidence, so nothing is suppressed here and EOS (also the
padding) stays writable.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import Tensor, nn

from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import (
    ARCHITECTURE_LOADERS,
    LOADERS,
    load_remote_code_model,
    load_tokenizer,
    remote_code_mask_id,
)

#: `mask_id` of the model card's `generate` (absent from config.json)
DEFAULT_MASK_ID = 156895
MASK_TOKEN = "<|mask|>"
#: `architectures` entries of the hub config.json (its `model_type` is "llada", shared with dense LLaDA)
ARCHITECTURES = ("LLaDAMoEModelLM", "LLaDAMoEModel")


class LLaDAMoEDenoiser(Denoiser):
    """LLaDA-MoE's `LLaDAMoEModelLM`: logits aligned with the input, time-independent, full attention.

    Module paths inside `self.model`: input embedding `model.embed_tokens`; attention output projection of layer i
    `model.layers[i].self_attn.o_proj`; `attention_output_modules()` lists them in layer order. The output head
    `lm_head` is cut to the step window by the default `_head` (its input is sliced).
    """

    family = "llada_moe"

    @property
    def input_embeddings(self) -> nn.Module:
        return self.model.model.embed_tokens

    def attention_output_modules(self) -> list[nn.Module]:
        return [layer.self_attn.o_proj for layer in self.model.model.layers]

    @property
    def supports_kv_cache(self) -> bool:
        """The hub code takes `position_ids` (the rotary angles of a part forward start at its true position) and, with
        SDPA attention, hands every layer's rotated keys and values to `F.scaled_dot_product_attention`."""
        return type(self) is LLaDAMoEDenoiser and getattr(self.model.config, "_attn_implementation", None) == "sdpa"

    @property
    def supports_4d_mask(self) -> bool:
        """WINO's shadow block: the hub code takes `position_ids` but drops any attention mask, so the 4-D mask is
        injected into its SDPA calls (`mask_injection`), as for the padding mask. SDPA attention only."""
        return type(self) is LLaDAMoEDenoiser and getattr(self.model.config, "_attn_implementation", None) == "sdpa"

    def masked_logits(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        """`Denoiser.masked_logits` for LLaDA-MoE (see `supports_4d_mask`): the mask injected, the positions passed."""
        from boe_eval.models.mask_injection import injected_attention_mask

        self._check_4d_mask(attention_mask)
        with injected_attention_mask(attention_mask) as record, self.router_saved_tensors():
            logits = self.model(input_ids=input_ids, position_ids=position_ids, use_cache=False,
                                return_dict=True).logits
        if not record.calls:
            raise RuntimeError(f"{self.name}: the 4-D mask reached no attention call: the model does not attend "
                               "through torch.nn.functional.scaled_dot_product_attention")
        return logits

    def router_saved_tensors(self):
        """A context for forwards with gradients (BoE's surrogate): the hub router adds `expert_bias` in place to the
        softmax it has just computed (`routing_weights += self.expert_bias`), which autograd saved for the backward,
        so the backward fails ("modified by an inplace operation"). Inside the context every saved tensor whose last
        dimension is the number of experts is saved as a copy taken when it is saved, i.e. the value autograd
        expects: the same gradients as an out-of-place add, the hub code unchanged. Nothing happens without
        gradients or without an expert bias."""
        sizes = {int(m.expert_bias.shape[-1]) for m in self.model.modules()
                 if isinstance(getattr(m, "expert_bias", None), Tensor)}
        if not sizes or not torch.is_grad_enabled():
            return contextlib.nullcontext()

        def pack(tensor: Tensor) -> Tensor:
            return tensor.clone() if tensor.dim() and tensor.shape[-1] in sizes else tensor

        return torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)

    def _forward(
        self,
        input_ids: Tensor | None,
        inputs_embeds: Tensor | None,
        attention_mask: Tensor | None,
        timestep: Tensor | None,
    ) -> Tensor:
        with self.router_saved_tensors():
            out = self.model(
                input_ids=input_ids,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,  # dropped by the hub code; padding is kept out by mask injection
                use_cache=False,
                return_dict=True,
            )
        return out.logits


def llada_moe_mask_id(config, tokenizer, vocab_size: int) -> int:
    """config.mask_token_id, else the tokenizer's `<|mask|>`, else its mask token, else 156895."""
    return remote_code_mask_id("LLaDA-MoE", config, tokenizer, MASK_TOKEN, DEFAULT_MASK_ID, vocab_size)


def load_llada_moe(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> LLaDAMoEDenoiser:
    """LLaDA-MoE from a local directory: `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`."""
    tokenizer = load_tokenizer(path)
    model = load_remote_code_model(path, dtype, device, ("AutoModelForCausalLM", "AutoModel"))
    vocab_size = int(model.get_input_embeddings().weight.shape[0])
    return LLaDAMoEDenoiser(
        model,
        tokenizer,
        mask_id=llada_moe_mask_id(model.config, tokenizer, vocab_size),
        forbidden_ids=(),  # EOS is also the padding and must stay writable
        honours_padding_mask=False,  # until the load-time probe says otherwise
        name=str(path),
    )


for _architecture in ARCHITECTURES:
    ARCHITECTURE_LOADERS[_architecture] = load_llada_moe
LOADERS["lladamoe"] = load_llada_moe  # copies that renamed the model type (e.g. dllm's `LLaDAMoEConfig`)

__all__ = ["ARCHITECTURES", "LLaDAMoEDenoiser", "llada_moe_mask_id", "load_llada_moe"]
