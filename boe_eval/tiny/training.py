"""Training of the built-in small MDMs (masked diffusion objective, LLaDA / MDLM).

For a clean pair (prompt, answer): t ~ U(eps, 1), each answer token is masked with probability t,
the loss is the cross-entropy on masked answer tokens weighted by 1/t (the MDM ELBO, paper eq. 6),
averaged over answer tokens. Prompt tokens are never masked. Budgeted in optimiser steps, not
seconds; the checkpoint kept is the one with the best validation loss.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import BertConfig, BertForMaskedLM

from boe_eval.tiny.tokenizer import build_char_tokenizer


@dataclass
class TrainConfig:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    max_positions: int = 64
    eval_every: int = 100
    seed: int = 0
    threads: int = 1
    min_t: float = 1e-3


def encode_pairs(tokenizer, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, int]:
    """Token ids [B, P + A] of equal-length prompt/answer pairs, and the prompt length P."""
    ids = [tokenizer(p + a, add_special_tokens=False).input_ids for p, a in pairs]
    prompt_len = len(tokenizer(pairs[0][0], add_special_tokens=False).input_ids)
    if len({len(x) for x in ids}) != 1:
        raise ValueError("built-in training expects fixed-length prompts and answers")
    return torch.tensor(ids), prompt_len


def mdm_loss(model, x: torch.Tensor, prompt_len: int, mask_id: int, generator: torch.Generator, min_t: float) -> torch.Tensor:
    """Masked-diffusion loss (eq. 6 with w_t = 1/t) on the answer part of `x`."""
    b, length = x.shape
    t = torch.rand(b, 1, generator=generator).clamp(min=min_t)
    masked = torch.zeros_like(x, dtype=torch.bool)
    masked[:, prompt_len:] = torch.rand(b, length - prompt_len, generator=generator) < t
    logits = model(input_ids=x.masked_fill(masked, mask_id)).logits
    weights = (1.0 / t).expand_as(masked)[masked]
    ce = F.cross_entropy(logits[masked], x[masked], reduction="none")
    return (ce * weights).sum() / (b * (length - prompt_len))


def train(stream: Iterator[tuple[str, str]], validation: list[tuple[str, str]], config: TrainConfig, out: Path) -> dict:
    """Train a BertForMaskedLM MDM; save the best-validation checkpoint (+ tokenizer) to `out`."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    tokenizer = build_char_tokenizer()
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            num_hidden_layers=config.layers,
            num_attention_heads=config.heads,
            intermediate_size=2 * config.hidden_size,
            max_position_embeddings=config.max_positions,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    val_x, val_p = encode_pairs(tokenizer, validation)
    best = {"val_loss": float("inf"), "step": 0}
    start = time.perf_counter()
    bar = tqdm(range(1, config.steps + 1), desc="training", mininterval=5)
    for step in bar:
        model.train()
        x, prompt_len = encode_pairs(tokenizer, [next(stream) for _ in range(config.batch_size)])
        loss = mdm_loss(model, x, prompt_len, tokenizer.mask_token_id, gen, config.min_t)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % config.eval_every == 0 or step == config.steps:
            model.eval()
            with torch.no_grad():
                val_gen = torch.Generator().manual_seed(12345)  # same masks at every evaluation
                val = float(mdm_loss(model, val_x, val_p, tokenizer.mask_token_id, val_gen, config.min_t))
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{val:.3f}")
            if val < best["val_loss"]:
                best = {"val_loss": val, "step": step}
                model.save_pretrained(out)
                tokenizer.save_pretrained(out)
    best["train_seconds"] = time.perf_counter() - start
    best["parameters"] = sum(p.numel() for p in model.parameters())
    return best
