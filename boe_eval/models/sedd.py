"""SEDD with the absorbing graph (louaaron/Score-Entropy-Discrete-Diffusion, Lou et al. 2024) behind the Denoiser
contract: TABES Table 4's "SEDD-absorb" row.

**Checkpoint layout.** The layout SEDD publishes on the Hub (louaaron/sedd-small, sedd-medium), which its
`load_model_hf` reads through `PyTorchModelHubMixin`: `config.json` (SEDD's Hydra config as a dict: `tokens`,
`graph.type`, `noise.type`, `model.{hidden_size, cond_dim, n_blocks, n_heads, scale_by_sigma, ...}`) and the
weights in `model.safetensors` or `pytorch_model.bin`. The GPT-2 tokenizer is not in that repository: put its
files in the same directory or name a directory that holds them in `$SEDD_TOKENIZER`. SEDD's training-run layout
(`checkpoints-meta/checkpoint.pth` plus a Hydra run directory, `load_model_local`) is not supported.

**Network.** SEDD's own class imports `flash_attn` (and einops, omegaconf, huggingface_hub); `SEDDNet` below is
a restatement of `model/transformer.py` in plain torch with the same parameter names, so the published state
dict loads into it directly: DiT blocks with adaLN modulation by c = SiLU(MLP(sinusoidal(sigma))), rotary on q
and k, bidirectional attention, an adaLN final layer, and with `scale_by_sigma` the output shifted by
-log(e^sigma - 1) - log(V - 1), then the entry of the input token set to 0. Deliberate differences: attention
by `scaled_dot_product_attention` (flash_attn's varlen kernel computes the same softmax(q k^T / sqrt(d)) v) and
an optional key-padding mask (SEDD has none; unconditional generation never pads); the forward runs in the
model's dtype instead of SEDD's bf16 autocast; no dropout (eval only).

**Time.** The loop's t (fraction of the canvas masked) maps to SEDD's noise through its LogLinearNoise
(`noise_lib.py`, eps = 1e-3): sigma(t) = -log(1 - (1 - eps) t), i.e. 1 - e^{-sigma} = (1 - eps) t, the same
schedule as MDLM (`boe_eval.models.mdlm.sigma_from_time`).

**Score -> denoising distribution.** The network outputs log s_theta(x_t, sigma)_y, the log concrete score
p_sigma(x_t with position i set to y) / p_sigma(x_t) (SEDD eq. 7 / §3). At a masked position, for the absorbing
graph with P(masked | x0) = 1 - e^{-sigma}, that ratio is

    s(x_t, sigma)_y = p(x0_i = y | x_t) * e^{-sigma} / (1 - e^{-sigma}) = p(x0_i = y | x_t) / (e^{sigma} - 1),

which is what SEDD's own Tweedie denoiser step uses (`sampling.Denoiser.update_fn` with dsigma = sigma):
`Absorbing.staggered_score(score, sigma)` multiplies the non-mask entries by e^{sigma} and
`Absorbing.transp_transition(mask, sigma)` multiplies them by 1 - e^{-sigma}, giving probs_y = s_y (e^{sigma} - 1)
before the mask column is dropped; its loss (`Absorbing.score_entropy`) likewise weights s_{x0} by
1 / (e^{sigma} - 1). `denoising_log_probs` returns log p(x0_i = y | x_t) = log s_y + log(e^{sigma} - 1),
renormalised over the non-mask ids (the network's total mass is close to, not exactly, 1). At an unmasked
position the absorbing reverse process never moves the token (`Absorbing.transp_rate` is zero there), so the
distribution is the token itself (carry-over, like MDLM's SUBS). Logits stay finite for the load-time sanity
check: the mask column and the impossible entries get `LOG_ZERO` (e^-69 ~ 1e-30), and the loop forbids the
mask id anyway.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from boe_eval.errors import ConfigError
from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import LOADERS
from boe_eval.models.mdlm import sigma_from_time

#: LogLinearNoise eps in SEDD (`noise_lib.py`)
NOISE_EPS = 1e-3
#: finite stand-in for log 0 (probability ~1e-30): keeps the logits finite for the sanity check
LOG_ZERO = -69.0


def is_sedd_config(config: dict) -> bool:
    """SEDD's Hub config.json has no model_type: it is its Hydra config (`tokens`, `graph`, `noise`, `model`)."""
    return all(key in config for key in ("tokens", "graph", "noise", "model")) and isinstance(config["model"], dict)


# ----------------------------------------------------------------------------------------------- the network
class _LayerNorm(nn.Module):
    """SEDD's LayerNorm: no bias, computed in float32, then scaled."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.float(), [self.dim]).to(self.weight.dtype) * self.weight


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class _TimestepEmbedder(nn.Module):
    """sigma -> MLP([cos(sigma f), sin(sigma f)]), f_k = 10000^{-k/128} (DiT's / SEDD's `TimestepEmbedder`)."""

    def __init__(self, hidden: int, frequency_size: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.frequency_size = frequency_size

    def forward(self, sigma: Tensor) -> Tensor:
        half = self.frequency_size // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half)
        args = sigma.float()[:, None] * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(embedding.to(self.mlp[0].weight.dtype))


class _Rotary(nn.Module):
    """Rotary frequencies of SEDD's `rotary.Rotary` (a persistent buffer: it is in the state dict)."""

    def __init__(self, dim: int, base: float = 10_000.0) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)))

    def forward(self, length: int, device) -> tuple[Tensor, Tensor]:
        freqs = torch.outer(torch.arange(length, device=device, dtype=torch.float32), self.inv_freq.float())
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()  # [L, head_dim]


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x cos + rotate_half(x) sin (GPT-NeoX layout, as SEDD's fallback and flash_attn's non-interleaved kernel)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class _Block(nn.Module):
    def __init__(self, dim: int, n_heads: int, cond_dim: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = _LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = _LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * dim, dim))
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)

    def forward(self, x: Tensor, rotary: tuple[Tensor, Tensor], c: Tensor, key_mask: Tensor | None) -> Tensor:
        b, length, dim = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        qkv = self.attn_qkv(_modulate(self.norm1(x), shift_msa, scale_msa))
        q, k, v = qkv.view(b, length, 3, self.n_heads, dim // self.n_heads).permute(2, 0, 3, 1, 4)  # [B, H, L, d]
        cos, sin = (r.to(q.dtype) for r in rotary)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)  # v is left alone (SEDD sets cos = 1, sin = 0 for it)
        mask = None if key_mask is None else key_mask[:, None, None, :].bool()
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + gate_msa * self.attn_out(attn.transpose(1, 2).reshape(b, length, dim))
        return x + gate_mlp * self.mlp(_modulate(self.norm2(x), shift_mlp, scale_mlp))


class _EmbeddingLayer(nn.Module):
    def __init__(self, dim: int, vocab: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(vocab, dim))
        nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))

    def forward(self, ids: Tensor) -> Tensor:
        return self.embedding[ids]


class _FinalLayer(nn.Module):
    def __init__(self, hidden: int, out: int, cond_dim: int) -> None:
        super().__init__()
        self.norm_final = _LayerNorm(hidden)
        self.linear = nn.Linear(hidden, out)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * hidden)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


class SEDDNet(nn.Module):
    """SEDD's `model/transformer.py` SEDD (absorbing graph) in plain torch, same parameter names (see module doc).

    `forward(indices, sigma)` returns log s_theta(x, sigma) [B, L, tokens + 1], the input token's entry 0."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = config
        if config["graph"]["type"] != "absorb":
            raise ConfigError(f"SEDD graph {config['graph']['type']!r}: only the absorbing graph is a masked denoiser")
        m = config["model"]
        hidden, cond_dim, heads = int(m["hidden_size"]), int(m["cond_dim"]), int(m["n_heads"])
        vocab = int(config["tokens"]) + 1
        self.vocab_embed = _EmbeddingLayer(hidden, vocab)
        self.sigma_map = _TimestepEmbedder(cond_dim)
        self.rotary_emb = _Rotary(hidden // heads)
        self.blocks = nn.ModuleList(_Block(hidden, heads, cond_dim) for _ in range(int(m["n_blocks"])))
        self.output_layer = _FinalLayer(hidden, vocab, cond_dim)
        self.scale_by_sigma = bool(m.get("scale_by_sigma", True))

    def forward(self, indices: Tensor, sigma: Tensor, inputs_embeds: Tensor | None = None,
                key_mask: Tensor | None = None) -> Tensor:
        x = self.vocab_embed(indices) if inputs_embeds is None else inputs_embeds
        c = F.silu(self.sigma_map(sigma))
        rotary = self.rotary_emb(x.shape[1], x.device)
        for block in self.blocks:
            x = block(x, rotary, c, key_mask)
        x = self.output_layer(x, c)
        if self.scale_by_sigma:
            esigm1_log = torch.where(sigma < 0.5, torch.expm1(sigma), sigma.exp() - 1).log().to(x.dtype)
            x = x - esigm1_log[:, None, None] - math.log(x.shape[-1] - 1)
        return torch.scatter(x, -1, indices[..., None], torch.zeros_like(x[..., :1]))


# ----------------------------------------------------------------------------------------------- the conversion
def denoising_log_probs(log_score: Tensor, sigma: Tensor, indices: Tensor, mask_id: int) -> Tensor:
    """log p(x0_i = y | x_t) [B, L, V] from SEDD's log score (module doc): at masked positions
    log s_y + log(e^sigma - 1) renormalised over y != mask; at unmasked positions the token itself; `LOG_ZERO`
    for impossible entries (the mask column everywhere)."""
    log_score = log_score.float()
    esigm1_log = torch.where(sigma < 0.5, torch.expm1(sigma), sigma.exp() - 1).log().float()
    values = log_score + esigm1_log.reshape(-1, 1, 1)
    values[..., mask_id] = -math.inf
    values = torch.log_softmax(values, dim=-1)
    carry = torch.full_like(values, LOG_ZERO).scatter(-1, indices[..., None], 0.0)
    out = torch.where((indices == mask_id)[..., None], values, carry)
    return out.clamp_min(LOG_ZERO)


class SEDDDenoiser(Denoiser):
    """SEDD-absorb, time-conditioned (`timestep` = fraction masked t in [0, 1], one per row); `logits` returns
    log p(x0 | x_t) (module doc). Module paths in `self.model` (a `SEDDNet`): input embedding `vocab_embed`
    (its `.embedding` is E [V, d]); attention output projection of block i `blocks[i].attn_out`."""

    family = "sedd"

    def __init__(self, model: nn.Module, tokenizer, **kwargs) -> None:
        kwargs.setdefault("time_conditioned", True)
        super().__init__(model, tokenizer, **kwargs)

    @property
    def input_embeddings(self) -> nn.Module:
        return self.model.vocab_embed

    @property
    def embedding_matrix(self) -> Tensor:
        return self.model.vocab_embed.embedding

    @property
    def max_length(self) -> int | None:
        return int(self.model.config["model"].get("length", 1024))

    def _head(self):
        return None  # the score is scaled and scattered after the head: full logits, then sliced

    def attention_output_modules(self) -> list[nn.Module]:
        return [block.attn_out for block in self.model.blocks]

    def _forward(self, input_ids, inputs_embeds, attention_mask, timestep) -> Tensor:
        reference = input_ids if input_ids is not None else inputs_embeds
        if timestep is None:
            raise ValueError(f"{self.name} is time-conditioned (SEDD): pass timestep (fraction masked in [0, 1] per row)")
        t = torch.as_tensor(timestep, dtype=torch.float32, device=reference.device).reshape(-1)
        t = t.expand(reference.shape[0]) if t.numel() == 1 else t
        sigma = sigma_from_time(t, NOISE_EPS)
        if input_ids is None:
            # the score's carry-over and scatter need the ids: every embedding row that is not E[mask] is read as
            # a non-mask token (the loop feeds mixtures at masked positions only through BoE's soft inputs)
            with torch.no_grad():
                embeds = inputs_embeds.detach()
                mask_row = self.embedding_matrix[self.mask_id].to(embeds.dtype)
                is_mask = (embeds - mask_row).abs().amax(-1) == 0
                nearest = torch.cdist(embeds.float(), self.embedding_matrix.float()[None]).argmin(-1)
                input_ids = torch.where(is_mask, self.mask_id, nearest)
        key_mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask
        log_score = self.model(input_ids, sigma, inputs_embeds=inputs_embeds, key_mask=key_mask)
        return denoising_log_probs(log_score, sigma, input_ids, self.mask_id)


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    for candidate in (path, os.environ.get("SEDD_TOKENIZER")):
        if candidate and any((Path(candidate) / name).is_file() for name in ("tokenizer_config.json", "vocab.json")):
            return AutoTokenizer.from_pretrained(str(candidate))
    raise ConfigError(
        f"SEDD checkpoint {str(path)!r} has no tokenizer: copy GPT-2's tokenizer files into it or set $SEDD_TOKENIZER "
        "to a directory that holds them (e.g. the GPT-2 scorer's)"
    )


def load_sedd(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> SEDDDenoiser:
    """SEDD-absorb from a local directory in the Hub layout (config.json + model.safetensors / pytorch_model.bin)."""
    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    if not is_sedd_config(config):
        raise ConfigError(f"{path}/config.json is not SEDD's config (tokens, graph, noise, model)")
    if config["noise"].get("type", "loglinear") != "loglinear":
        raise ConfigError(f"SEDD noise {config['noise']['type']!r}: only the loglinear schedule maps onto t")
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(path / "model.safetensors"))
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(str(path / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    else:
        raise ConfigError(f"SEDD checkpoint {str(path)!r} has neither model.safetensors nor pytorch_model.bin")
    model = SEDDNet(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise ConfigError(f"SEDD weights in {str(path)!r} do not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model = model.to(device=device, dtype=dtype).eval()
    model.rotary_emb.inv_freq.data = model.rotary_emb.inv_freq.float()
    tokenizer = _load_tokenizer(path)
    tokens = int(config["tokens"])
    if len(tokenizer) > tokens:
        raise ConfigError(f"SEDD has {tokens} tokens but its tokenizer {len(tokenizer)}: not the model's tokenizer")
    forbidden = [i for i in (tokenizer.pad_token_id, getattr(tokenizer, "mask_token_id", None)) if i is not None and i != tokenizer.eos_token_id]
    return SEDDDenoiser(model, tokenizer, mask_id=tokens, forbidden_ids=forbidden, name=str(path))


LOADERS["sedd"] = load_sedd

__all__ = ["SEDDDenoiser", "SEDDNet", "denoising_log_probs", "is_sedd_config", "load_sedd"]
