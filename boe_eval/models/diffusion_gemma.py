"""DiffusionGemma (google/diffusiongemma-*; transformers' native `DiffusionGemmaForBlockDiffusion`, transformers 5)
behind the Denoiser contract, and its own entropy-bound sampler restated as a reference (docs/references.md §14).

The model is an encoder-decoder over one sequence: an autoregressive (causal) encoder reads the prompt and every
finished canvas into a KV cache; a decoder denoises the current *canvas* of `canvas_length` tokens (the block) with
bidirectional attention over the cache and the canvas, conditioned on the previous step's logits
(self-conditioning). There is **no mask token**: a canvas starts as tokens drawn uniformly from the vocabulary,
and slots that are not accepted are re-drawn uniformly (a uniform-noise canvas).

In boe-eval's loop (`DiffusionGemmaDenoiser`): a row is [prompt, canvas], the canvas being the last
`canvas_length` real positions of the row; the loop's uncommitted slots carry a placeholder id (`mask_id`, the pad
token, which the model never sees and may never write) that the denoiser replaces by uniform noise before each
forward, drawn from a generator seeded by the row's own tokens, so a row gets the same logits whatever shares its
batch, and fresh noise at every step (the row changes at every step). Committed slots stay clean, as accepted
tokens do in the reference sampler. What the loop cannot give is the self-conditioning signal (it keeps no state
between forwards: every forward is like the reference's first step) and the reference's re-evaluation of
accepted slots. Only samplers that rank the noisy slots by the predicted distribution and commit without
look-ahead or re-masking apply (`LOOP_SAMPLERS`), with gen_length = block_length = canvas_length; the pre-flight
refuses anything else in one line (`check_run`). Prompt positions get zero logits (no prediction).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn

from boe_eval.errors import ConfigError
from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import LOADERS, PREFLIGHT_CHECKS

#: boe-eval samplers that apply to a uniform-noise canvas: rank the noisy slots by the predicted distribution,
#: commit without re-masking and without look-ahead forwards on soft inputs
LOOP_SAMPLERS = ("confidence", "margin", "entropy", "random", "threshold", "factor", "eb")


def row_noise(row: Tensor, positions: Tensor, vocab_size: int) -> Tensor:
    """Uniform token ids for `positions` of `row`, from a generator seeded by the row's tokens (a deterministic
    function of the row: batch composition never changes it)."""
    digest = hashlib.sha256(repr(row.tolist()).encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return torch.randint(0, vocab_size, (int(positions.numel()),), generator=generator).to(row.device)


class DiffusionGemmaDenoiser(Denoiser):
    """`DiffusionGemmaForBlockDiffusion` in the loop's convention (see the module docstring)."""

    family = "diffusion_gemma"

    @property
    def canvas_length(self) -> int:
        return int(self.model.config.canvas_length)

    @property
    def input_embeddings(self) -> nn.Module:
        return self.model.model.decoder.embed_tokens

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.text_config.vocab_size)

    @property
    def max_length(self) -> int | None:
        return getattr(self.model.config.text_config, "max_position_embeddings", None)

    def _forward(self, input_ids: Tensor | None, inputs_embeds: Tensor | None, attention_mask: Tensor | None,
                 timestep: Tensor | None) -> Tensor:
        if input_ids is None:
            raise ConfigError("DiffusionGemma takes token ids only (its decoder embeds the canvas itself): "
                              "a sampler that passes soft inputs does not apply")
        batch, width = input_ids.shape
        lengths = attention_mask.long().sum(1).tolist() if attention_mask is not None else [width] * batch
        logits = torch.zeros(batch, width, self.vocab_size, device=input_ids.device)
        groups: dict[tuple[int, int], list[int]] = {}
        for row, length in enumerate(lengths):
            canvas = min(self.canvas_length, length - 1)  # the decoder needs at least one context token
            groups.setdefault((length - canvas, canvas), []).append(row)
        for (context, canvas), rows in groups.items():
            ids = input_ids[rows, : context + canvas].clone()
            for i in range(len(rows)):
                noisy = (ids[i, context:] == self.mask_id).nonzero(as_tuple=True)[0] + context
                ids[i, noisy] = row_noise(ids[i], noisy, self.vocab_size)
            out = self.model(input_ids=ids[:, :context], decoder_input_ids=ids[:, context:])
            logits[rows, context : context + canvas] = out.logits.to(logits.dtype)
        return logits


def load_diffusion_gemma(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Denoiser:
    """DiffusionGemma from a local directory through transformers' own class (no remote code)."""
    import transformers

    try:
        from transformers import DiffusionGemmaForBlockDiffusion
    except ImportError:
        raise ConfigError(
            f"the model in {str(path)!r} is DiffusionGemma, which transformers {transformers.__version__} does not "
            "have: install a version that does (pip install 'transformers>=5.24'; checked on 5.24)"
        ) from None
    from boe_eval.models.loading import load_tokenizer

    tokenizer = load_tokenizer(path)
    model = DiffusionGemmaForBlockDiffusion.from_pretrained(str(path), dtype=dtype).to(device).eval()
    config = model.config
    placeholder = config.text_config.pad_token_id
    if placeholder is None:
        raise ConfigError(f"DiffusionGemma in {str(path)!r} has no pad_token_id in its text_config: boe-eval needs "
                          "one as the placeholder of its noisy slots")
    image_ids = [i for i in (config.boi_token_id, config.eoi_token_id, config.image_token_id) if i is not None]
    return DiffusionGemmaDenoiser(model, tokenizer, mask_id=placeholder, forbidden_ids=image_ids, name=str(path))


def check_run(config: dict, sampler: str, gen_length: int, block_length: int) -> None:
    """Pre-flight (no model loaded): refuse a sampler or a layout that does not apply to DiffusionGemma."""
    canvas = int(config.get("canvas_length") or 256)
    if sampler not in LOOP_SAMPLERS:
        raise ConfigError(
            f"sampler={sampler} does not apply to DiffusionGemma (a uniform-noise canvas without a mask token: no "
            f"re-masking, no look-ahead on soft inputs): choose one of {', '.join(LOOP_SAMPLERS)}"
        )
    if not gen_length == block_length == canvas:
        raise ConfigError(
            f"gen_length={gen_length}, block_length={block_length} do not fit DiffusionGemma: its canvas is "
            f"{canvas} tokens, so set gen_length={canvas} block_length={canvas}"
        )


LOADERS["diffusion_gemma"] = load_diffusion_gemma
PREFLIGHT_CHECKS["diffusion_gemma"] = check_run


@torch.no_grad()
def entropy_bound_generate(
    model: nn.Module,
    input_ids: Tensor,
    *,
    max_new_tokens: int,
    max_denoising_steps: int = 48,
    entropy_bound: float = 0.1,
    t_min: float = 0.4,
    t_max: float = 0.8,
    stability_threshold: int = 1,
    confidence_threshold: float = 0.005,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> tuple[Tensor, Tensor]:
    """DiffusionGemma's own sampler (transformers 5.24 `DiffusionGemmaGenerationMixin.generate` with its
    `EntropyBoundSampler`), restated as a reference; defaults are its `_get_default_generation_params`.

    Canvas after canvas (blocks of `canvas_length`), the prompt and finished canvases are encoded into the cache;
    the canvas starts uniform; at step n = N..1 the decoder's logits (self-conditioned on the previous step's) are
    divided by t = t_min + (t_max - t_min) n / N; x̂ is drawn from them; the slots of lowest entropy are accepted
    while (sum of their entropies) - (largest of them) <= entropy_bound (EB-Sampler, Ben-Hamu et al. 2025) and take
    x̂, every other slot is re-drawn uniformly; a row stops denoising once its argmax canvas has not changed for
    `stability_threshold` steps and its mean entropy is below `confidence_threshold`. The canvas kept is the
    argmax canvas. After a canvas, a row that wrote EOS is finished (later tokens become `pad_token_id`).
    Random draws come from torch's global generator in the reference's order. Returns (generated ids [B, new],
    decoder forwards per row [B]: the forwards of a row that stopped early are not counted, as the reference's
    `tokens_per_forward`)."""
    from transformers import DynamicCache

    config = model.config
    vocab, canvas_length = int(config.text_config.vocab_size), int(config.canvas_length)
    batch, prompt_length = input_ids.shape
    device = input_ids.device
    cache = DynamicCache(config=config.get_text_config(decoder=True))
    sequence, new_ids, cur_len = input_ids, input_ids, prompt_length
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    forwards = torch.zeros(batch, dtype=torch.long, device=device)
    for _ in range(-(-max_new_tokens // canvas_length)):
        positions = torch.arange(cur_len - new_ids.shape[1], cur_len, device=device)[None]
        model.model.encoder(input_ids=new_ids, cache=cache, position_ids=positions)
        decoder_positions = torch.arange(cur_len, cur_len + canvas_length, device=device)[None]
        canvas = torch.randint(0, vocab, (batch, canvas_length), device=device)
        argmax, self_conditioning = canvas, None
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        history = torch.full((stability_threshold, batch, canvas_length), -1, dtype=torch.long, device=device)
        for step in range(max_denoising_steps, 0, -1):
            forwards += (~(done | finished)).long()
            raw = model(cache=cache, decoder_input_ids=canvas, self_conditioning_logits=self_conditioning,
                        decoder_position_ids=decoder_positions).logits
            logits = raw / (t_min + (t_max - t_min) * step / max_denoising_steps)
            probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
            drawn = torch.multinomial(probs.view(-1, vocab), num_samples=1).view(batch, canvas_length)
            new_argmax = logits.argmax(-1)
            entropy = torch.distributions.Categorical(logits=logits).entropy()
            order_entropy, order = entropy.sort(dim=-1)
            accept_sorted = order_entropy.cumsum(-1) - order_entropy <= entropy_bound
            accepted = torch.zeros_like(accept_sorted).scatter(-1, order, accept_sorted)
            kept = torch.where(accepted, drawn, canvas)
            new_canvas = torch.where(accepted, kept, torch.randint(0, vocab, (batch, canvas_length), device=device))
            if done.any():  # rows that stopped keep their state
                new_argmax = torch.where(done[:, None], argmax, new_argmax)
                new_canvas = torch.where(done[:, None], canvas, new_canvas)
                logits = torch.where(done[:, None, None], self_conditioning, logits)
            if stability_threshold == 0:
                stable = torch.ones(batch, dtype=torch.bool, device=device)
            else:
                stable = (history == new_argmax[None]).all(-1).all(0)
                history = torch.cat([history[1:], new_argmax[None]])
            mean_entropy = torch.distributions.Categorical(logits=logits).entropy().mean(-1)
            done = done | (stable & (mean_entropy < confidence_threshold))
            canvas, argmax = new_canvas, new_argmax
            self_conditioning = logits.to(model.model.decoder.embed_tokens.weight.dtype)
            if bool(done.all()):
                break
        previously_finished = finished
        if pad_token_id is not None:
            argmax = torch.where(previously_finished[:, None], torch.full_like(argmax, pad_token_id), argmax)
        if eos_token_id is not None:
            is_eos = argmax == eos_token_id
            finished = finished | is_eos.any(-1)
            if pad_token_id is not None:
                seen = is_eos.long().cumsum(-1)
                after_eos = (seen > 0) & ~((seen == 1) & is_eos) & ~previously_finished[:, None]
                argmax = torch.where(after_eos, torch.full_like(argmax, pad_token_id), argmax)
        sequence = torch.cat([sequence, argmax], dim=-1)
        new_ids, cur_len = argmax, cur_len + canvas_length
        if bool(finished.all()):
            break
    return sequence[:, prompt_length:], forwards


__all__ = ["DiffusionGemmaDenoiser", "LOOP_SAMPLERS", "check_run", "entropy_bound_generate", "load_diffusion_gemma",
           "row_noise"]
