"""MDLM (kuleshov-group/mdlm-owt and checkpoints with the same remote code) behind the Denoiser contract.

MDLM is time-conditioned: its HF model `MDLM.forward(input_ids, timesteps, ...)` takes the noise level
sigma(t), which MDLM's sampler (`diffusion.py`, LogLinearNoise) computes from the diffusion time t as
sigma(t) = -log(1 - (1 - eps) t), eps = 1e-3. `MDLMDenoiser.logits(..., timestep=t)` converts t to sigma.
(mdlm-owt sets `time_conditioning: false`, and its backbone then zeroes sigma itself.)
The HF model has no `inputs_embeds` argument: the embeddings are fed by replacing the output of its embedding
layer `backbone.vocab_embed` for the duration of the call. It has no `attention_mask` argument either (the
mask is passed when a checkpoint's forward accepts one); the load-time probe finds out whether padding is
honoured. Logits are aligned with the input and returned raw (MDLM's SUBS parameterisation, -inf on the mask
token and carry-over of unmasked tokens, is left to the decoding loop, which forbids the mask token and only
reads masked positions). The real mdlm-owt code imports `flash_attn`, so it needs a GPU environment.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from boe_eval.errors import ConfigError
from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import LOADERS, load_remote_code_model, load_tokenizer

#: LogLinearNoise eps in MDLM (`noise_schedule.py`)
NOISE_EPS = 1e-3


def sigma_from_time(t: Tensor, eps: float = NOISE_EPS) -> Tensor:
    """MDLM's log-linear total noise sigma(t) = -log(1 - (1 - eps) t) (alpha_t = exp(-sigma) = 1 - (1-eps) t)."""
    return -torch.log1p(-(1 - eps) * t)


@contextlib.contextmanager
def _replace_output(module: nn.Module, output: Tensor) -> Iterator[None]:
    """Inside the context, `module(...)` returns `output` (a forward hook's return value replaces the output)."""
    handle = module.register_forward_hook(lambda _module, _args, _out: output)
    try:
        yield
    finally:
        handle.remove()


class MDLMDenoiser(Denoiser):
    """MDLM's DiT backbone: time-conditioned (`timestep` = diffusion time t in [0, 1], one per row).

    Module paths inside `self.model` (an `MDLM`), for ActiveQueryAttention and inspection: input embedding
    `backbone.vocab_embed` (its `.embedding` parameter is E [V, d]); attention output projection of block i
    `backbone.blocks[i].attn_out`; `attention_output_modules()` lists them in block order.
    """

    family = "mdlm"

    def __init__(self, model: nn.Module, tokenizer, **kwargs) -> None:
        kwargs.setdefault("time_conditioned", True)
        super().__init__(model, tokenizer, **kwargs)
        self._accepts_attention_mask = "attention_mask" in inspect.signature(model.forward).parameters

    @property
    def input_embeddings(self) -> nn.Module:
        return self.model.backbone.vocab_embed

    @property
    def embedding_matrix(self) -> Tensor:
        return self.model.backbone.vocab_embed.embedding

    def attention_output_modules(self) -> list[nn.Module]:
        """The attention output projection (`attn_out`) of every DiT block, in block order."""
        return [block.attn_out for block in self.model.backbone.blocks]

    def _forward(
        self,
        input_ids: Tensor | None,
        inputs_embeds: Tensor | None,
        attention_mask: Tensor | None,
        timestep: Tensor | None,
    ) -> Tensor:
        reference = input_ids if input_ids is not None else inputs_embeds
        if timestep is None:
            raise ValueError(f"{self.name} is time-conditioned (MDLM): pass timestep (diffusion time in [0, 1] per row)")
        t = torch.as_tensor(timestep, dtype=torch.float32, device=reference.device).reshape(-1)
        t = t.expand(reference.shape[0]) if t.numel() == 1 else t
        kwargs = {"timesteps": sigma_from_time(t), "return_dict": True}
        if self._accepts_attention_mask and attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if inputs_embeds is None:
            out = self.model(input_ids=input_ids, **kwargs)
        else:
            # the HF model takes ids only: feed placeholder ids and replace the embedding layer's output
            placeholder = torch.full(inputs_embeds.shape[:2], self.mask_id, dtype=torch.long, device=reference.device)
            with _replace_output(self.input_embeddings, inputs_embeds):
                out = self.model(input_ids=placeholder, **kwargs)
        return out.logits if hasattr(out, "logits") else (out[0] if isinstance(out, tuple) else out)


def mdlm_mask_id(config, tokenizer, vocab_size: int) -> int:
    """config.mask_token_id / mask_index, else the tokenizer's mask token, else MDLM's convention for
    tokenizers without one (GPT-2 for mdlm-owt): the extra last row of the vocabulary, vocab_size - 1."""
    for candidate in (getattr(config, "mask_token_id", None), getattr(config, "mask_index", None), tokenizer.mask_token_id):
        if candidate is not None:
            mask_id = int(candidate)
            break
    else:
        if len(tokenizer) != vocab_size - 1:
            raise ConfigError(
                f"cannot tell MDLM's mask id: no mask_token_id in config.json, no mask token in the tokenizer, "
                f"and the vocabulary ({vocab_size}) is not the tokenizer's ({len(tokenizer)}) plus one"
            )
        mask_id = vocab_size - 1
    if not 0 <= mask_id < vocab_size:
        raise ConfigError(f"MDLM mask id {mask_id} is outside the vocabulary (size {vocab_size})")
    return mask_id


def load_mdlm(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> MDLMDenoiser:
    """MDLM from a local directory: `AutoModelForMaskedLM.from_pretrained(path, trust_remote_code=True)`."""
    tokenizer = load_tokenizer(path)
    model = load_remote_code_model(path, dtype, device, ("AutoModelForMaskedLM", "AutoModel"))
    vocab_size = int(model.backbone.vocab_embed.embedding.shape[0])
    return MDLMDenoiser(model, tokenizer, mask_id=mdlm_mask_id(model.config, tokenizer, vocab_size), name=str(path))


LOADERS["mdlm"] = load_mdlm

__all__ = ["MDLMDenoiser", "load_mdlm", "mdlm_mask_id", "sigma_from_time"]
