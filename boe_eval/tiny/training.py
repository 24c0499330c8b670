"""Training of the built-in small MDMs (masked diffusion objective, LLaDA / MDLM).

For a clean pair (prompt, answer): t ~ U(eps, 1), each answer token is masked with probability t,
the loss is the cross-entropy on masked answer tokens weighted by 1/t (the MDM ELBO, paper eq. 6),
averaged over answer tokens. Prompt tokens are never masked. Budgeted in optimiser steps, not
seconds; the checkpoint kept is the one with the best validation loss.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm
from transformers import BertConfig, BertForMaskedLM

from boe_eval.tiny.tokenizer import build_char_tokenizer


STATE_FILE = "train_state.pt"  #: the resumable training state beside the checkpoint (not shipped)


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
    dropout: float = 0.1
    warmup: int = 0
    cosine: bool = False
    #: length of the cosine schedule (None = `steps`); a longer schedule stopped early at `steps`
    #: trains exactly the first `steps` steps of the longer run
    schedule_steps: int | None = None
    snapshot_every: int = 0  #: also save the model every N steps under out/snapshots/step<N> (0 = never)
    #: BERT's position encoding: "absolute" (learned per position) or "relative_key" (learned per distance, Shaw et
    #: al. 2018, as BertConfig implements it), which makes copying at a fixed offset one attention pattern
    position_embedding_type: str = "absolute"


@dataclass
class Batch:
    input_ids: Tensor  #: [B, W] prompt + answer + EOS padding, right-padded with PAD
    attention_mask: Tensor | None  #: [B, W], None when no row is padded
    gen_positions: Tensor  #: [B, G] positions of each row's generation slots


def encode_pairs(tokenizer, pairs: list[tuple[str, str]], gen_length: int | None = None) -> Batch:
    """Token ids of (prompt, answer) pairs laid out as the decoding canvas: prompt, then the answer
    followed by EOS up to `gen_length` slots (LLaDA pads its SFT answers with EOS the same way;
    None = the answers' own, equal, length), rows right-padded with PAD."""
    prompts = [tokenizer(p, add_special_tokens=False).input_ids for p, _ in pairs]
    answers = [tokenizer(a, add_special_tokens=False).input_ids for _, a in pairs]
    if gen_length is None:
        if len({len(a) for a in answers}) != 1:
            raise ValueError("answers of different lengths need a gen_length")
        gen_length = len(answers[0])
    rows = []
    for p, a in zip(prompts, answers):
        if len(a) > gen_length:
            raise ValueError(f"answer of {len(a)} tokens does not fit gen_length={gen_length}")
        rows.append(p + a + [tokenizer.eos_token_id] * (gen_length - len(a)))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        attention[i, : len(r)] = 1
    starts = torch.tensor([len(p) for p in prompts])
    gen_positions = starts[:, None] + torch.arange(gen_length)[None]
    return Batch(ids, None if bool(attention.all()) else attention, gen_positions)


def mdm_loss(model, batch: Batch, mask_id: int, generator: torch.Generator, min_t: float) -> Tensor:
    """Masked-diffusion loss (eq. 6 with w_t = 1/t) on the generation slots of `batch`, averaged
    over those slots; prompt tokens are never masked."""
    x = batch.input_ids
    b, gen = batch.gen_positions.shape
    t = torch.rand(b, 1, generator=generator).clamp(min=min_t)
    masked = torch.zeros_like(x, dtype=torch.bool)
    masked.scatter_(1, batch.gen_positions, torch.rand(b, gen, generator=generator) < t)
    logits = model(input_ids=x.masked_fill(masked, mask_id), attention_mask=batch.attention_mask).logits
    weights = (1.0 / t).expand_as(masked)[masked]
    ce = F.cross_entropy(logits[masked], x[masked], reduction="none")
    return (ce * weights).sum() / (b * gen)


def build_model(tokenizer, config: TrainConfig) -> BertForMaskedLM:
    """A freshly initialised BertForMaskedLM (bidirectional, time-independent like LLaDA)."""
    torch.manual_seed(config.seed)
    return BertForMaskedLM(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            num_hidden_layers=config.layers,
            num_attention_heads=config.heads,
            intermediate_size=2 * config.hidden_size,
            max_position_embeddings=config.max_positions,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout,
            pad_token_id=tokenizer.pad_token_id,
            position_embedding_type=config.position_embedding_type,
        )
    )


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up over `warmup` steps, then constant or (cosine=True) cosine decay to 10%."""
    if config.warmup and step <= config.warmup:
        return config.lr * step / config.warmup
    if not config.cosine:
        return config.lr
    total = config.schedule_steps or config.steps
    progress = (step - config.warmup) / max(1, total - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    stream: Iterator[tuple[str, str]],
    validation: list[tuple[str, str]],
    config: TrainConfig,
    out: Path,
    gen_length: int | None = None,
    tokenizer=None,
    config_fields: dict | None = None,
    resume: bool = False,
    stop_at: int | None = None,
) -> dict:
    """Train a BertForMaskedLM MDM on `stream`; save the best-validation-loss checkpoint (+ tokenizer)
    to `out`. Answers are padded with EOS to `gen_length` slots (None: fixed-length answers). `tokenizer`
    defaults to the character tokenizer; `config_fields` are extra entries of the saved config.json.

    Resumable: at every evaluation the whole training state (weights, optimiser, both random
    generators, step, history) is written to `out/train_state.pt`; `resume=True` continues from it
    (the first `step * batch_size` items of `stream` are skipped, so a fresh stream with the same seed
    continues where it stopped) and ends bit-exactly where an uninterrupted run ends. `stop_at` ends
    this chunk after that step (a multiple of `eval_every`, so the state is saved there)."""
    torch.set_num_threads(config.threads)
    tokenizer = build_char_tokenizer() if tokenizer is None else tokenizer
    model = build_model(tokenizer, config)
    for key, value in (config_fields or {}).items():
        setattr(model.config, key, value)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    val_batch = encode_pairs(tokenizer, validation, gen_length)
    best = {"val_loss": float("inf"), "step": 0}
    history = []
    first, elapsed = 1, 0.0
    state_file = out / STATE_FILE
    if stop_at is not None and stop_at < config.steps and stop_at % config.eval_every:
        raise ValueError(f"stop_at={stop_at} is invalid: it must be a multiple of eval_every={config.eval_every}")
    if resume and not state_file.exists():
        raise FileNotFoundError(f"resume: no training state at {state_file}")
    if resume:
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        best, history, elapsed = state["best"], state["history"], state["seconds"]
        first = state["step"] + 1
        for _ in range(state["step"] * config.batch_size):
            next(stream)
    last = min(config.steps, stop_at or config.steps)
    start = time.perf_counter() - elapsed
    bar = tqdm(range(first, last + 1), desc="training", mininterval=5)
    for step in bar:
        model.train()
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, config)
        batch = encode_pairs(tokenizer, [next(stream) for _ in range(config.batch_size)], gen_length)
        loss = mdm_loss(model, batch, tokenizer.mask_token_id, gen, config.min_t)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % config.eval_every == 0 or step == last:
            model.eval()
            with torch.no_grad():
                val_gen = torch.Generator().manual_seed(12345)  # same masks at every evaluation
                val = float(mdm_loss(model, val_batch, tokenizer.mask_token_id, val_gen, config.min_t))
            history.append({"step": step, "loss": round(loss.item(), 4), "val_loss": round(val, 4),
                            "seconds": round(time.perf_counter() - start, 1)})
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{val:.3f}")
            if config.snapshot_every and step % config.snapshot_every == 0:
                model.save_pretrained(out / "snapshots" / f"step{step}")
                tokenizer.save_pretrained(out / "snapshots" / f"step{step}")
            if val < best["val_loss"]:
                best = {"val_loss": val, "step": step}
                model.save_pretrained(out)
                tokenizer.save_pretrained(out)
            out.mkdir(parents=True, exist_ok=True)
            partial = state_file.with_suffix(".partial")  # written whole, then renamed: a kill leaves the last one
            torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                        "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
                        "best": best, "history": history, "seconds": time.perf_counter() - start},
                       partial)
            os.replace(partial, state_file)
    best = dict(best)
    best["train_seconds"] = time.perf_counter() - start
    best["last_step"] = last
    best["parameters"] = sum(p.numel() for p in model.parameters())
    best["history"] = history
    return best
