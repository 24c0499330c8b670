"""The small models of the unconditional-generation CPU ground (tasks/uncond_grammar): the text MDM trained on the
grammar corpus (`builtin:tiny_grammar`), and a tiny GPT-2 over the same words used as the AR scorer (GenPPL) and
MAUVE featurizer, random (tests) or trained on the corpus (the task's default, `builtin:tiny_grammar` folder `ar_scorer/`).

The MDM is an MDLM-style absorbing-state MDM trained with the MDLM/LLaDA objective (boe_eval.tiny.training) and,
like mdlm-owt (`time_conditioning: false`), does not read the diffusion time; its config.json says
`boe_mdlm_style: true`, so the MDLM sigma-schedule samplers (ReMDM, FB, DFM) accept it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from boe_eval.tiny.grammar import build_word_tokenizer, documents
from boe_eval.tiny.training import TrainConfig, train

#: words per document (the generation length of the task)
DOC_WORDS = 64
TEST_SEED, VALIDATION_SEED, TRAIN_SEED = 17_001, 17_002, 17_003
#: the MDM's settings (smaller than the addition / Sudoku models: 64 word ids, 64 positions)
MDM_CONFIG = TrainConfig(steps=600, batch_size=32, hidden_size=96, layers=3, heads=4, max_positions=DOC_WORDS,
                         eval_every=100, dropout=0.0, warmup=50, cosine=True)


def training_stream(seed: int, exclude: set[str]) -> Iterator[tuple[str, str]]:
    """Endless unconditional pairs ("", document); documents in `exclude` are never produced."""
    batch = 0
    while True:
        for doc in documents(256, DOC_WORDS, seed * 1_000_003 + batch):
            if doc not in exclude:
                yield "", doc
        batch += 1


def train_mdm(out: Path, steps: int | None = None, threads: int = 1, reference: list[str] | None = None,
              schedule_steps: int | None = None) -> dict:
    """Train the grammar MDM into `out` (best validation loss kept); `reference` documents are held out.
    `schedule_steps` > `steps` trains exactly the first `steps` steps of that longer cosine schedule."""
    config = replace(MDM_CONFIG, threads=threads, steps=steps or MDM_CONFIG.steps, schedule_steps=schedule_steps)
    validation = documents(256, DOC_WORDS, VALIDATION_SEED)
    exclude = set(reference or []) | set(validation)
    return train(training_stream(TRAIN_SEED, exclude), [("", d) for d in validation], config, out,
                 gen_length=DOC_WORDS, tokenizer=build_word_tokenizer(), config_fields={"boe_mdlm_style": True})


def build_gpt2(seed: int = 0, n_embd: int = 64, n_layer: int = 2, n_head: int = 4):
    """(GPT2LMHeadModel, tokenizer): a freshly initialised tiny GPT-2 over the grammar's words (no mask token;
    built locally, nothing downloaded). Seeded: the same weights on every machine."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = build_word_tokenizer(with_mask=False)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=2 * DOC_WORDS, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config).eval(), tokenizer


def train_gpt2(out: Path, steps: int = 300, batch_size: int = 32, lr: float = 3e-3, threads: int = 1,
               reference: list[str] | None = None) -> dict:
    """Train the tiny GPT-2 on the corpus (next-word cross-entropy on 64-word documents) and save it to `out`."""
    torch.set_num_threads(threads)
    model, tokenizer = build_gpt2()
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    stream = training_stream(TRAIN_SEED + 1, set(reference or []))
    start, history = time.perf_counter(), []
    for step in range(1, steps + 1):
        for group in optimiser.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        ids = torch.tensor([tokenizer(next(stream)[1]).input_ids for _ in range(batch_size)])
        logits = model(input_ids=ids).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 100 == 0 or step == steps:
            history.append({"step": step, "loss": round(loss.item(), 4), "seconds": round(time.perf_counter() - start, 1)})
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "final_loss": history[-1]["loss"],
            "train_seconds": time.perf_counter() - start, "parameters": sum(p.numel() for p in model.parameters()),
            "history": history}


__all__ = ["DOC_WORDS", "MDM_CONFIG", "build_gpt2", "train_gpt2", "train_mdm", "training_stream"]
