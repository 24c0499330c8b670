"""The approximation error of Fast-dLLM's prefix and dual KV caches against no cache (docs/design.md "KV caches"),
on the built-in carry-addition MDM and the tiny (random-weight) LLaDA and Dream stand-ins.

For each model, cache mode and sampler (confidence, threshold 0.9), one batch of prompts is decoded with the cache
and without; reported:
- token agreement: share of generated tokens equal to cache=none's (whole runs: an early difference carries on);
- per-step logit error: at every step of the cached run, the window logits the sampler saw against a fresh full
  forward of the same canvas (the cache's error on that very input), over the slots the step could write: max
  |difference|, and the share of those slots whose argmax differs; first steps of blocks are exact (counted apart);
- tokens processed and forward FLOPs per sequence (means), NFE.

    python scripts/cache_error.py --out results/cache_error
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import boe_eval.samplers  # noqa: E402,F401
from boe_eval.decoding import DecodeConfig, generate  # noqa: E402
from boe_eval.models.loading import load_denoiser  # noqa: E402
from boe_eval.samplers.base import build_sampler  # noqa: E402


class Recorder:
    """Wraps a policy; compares each step's (cached) window logits with a fresh whole forward of the canvas."""

    def __init__(self, inner, denoiser, prompts):
        self.inner, self.denoiser, self.prompts = inner, denoiser, prompts
        self.max_diff, self.slots, self.flipped, self.later_steps, self.first_max_diff = 0.0, 0, 0, 0, 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def select(self, ctx):
        offset = ctx.offset
        prefix = torch.tensor([self.prompts[r][:offset] for r in ctx.rows.tolist()], dtype=torch.long)
        canvas = torch.cat([prefix, ctx.x], dim=1)
        attention = torch.cat([torch.ones_like(prefix), ctx.attention_mask], dim=1)
        with torch.no_grad():
            fresh = self.denoiser.logits(canvas, attention_mask=attention, logits_from=offset).float()
        where = ctx.eligible
        seen, full = ctx.logits[where], fresh[where]
        finite = torch.isfinite(seen)
        diff = float((seen[finite] - full[finite]).abs().max()) if bool(finite.any()) else 0.0
        if ctx.block_step == 0:
            self.first_max_diff = max(self.first_max_diff, diff)
        else:
            self.later_steps += 1
            self.max_diff = max(self.max_diff, diff)
            self.slots += int(where.sum())
            self.flipped += int((seen.argmax(-1) != full.masked_fill(~finite, float("-inf")).argmax(-1)).sum())
        return self.inner.select(ctx)


def builtin_setting():
    model = load_denoiser("builtin:tiny_addition")
    rng = random.Random(0)
    texts = [f"{rng.randrange(10 ** rng.randint(1, 5))}+{rng.randrange(10 ** rng.randint(1, 5))}=" for _ in range(32)]
    prompts = [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return model, prompts, DecodeConfig(gen_length=12, steps=12, block_length=4)


def stand_in_setting(folder, kind):
    from fixtures.remote_code import make_remote_code_model

    model = load_denoiser(make_remote_code_model(kind, Path(folder) / kind))
    generator = torch.Generator().manual_seed(0)
    # equal lengths: LLaDA's code ignores the padding mask
    prompts = torch.randint(3, 60, (16, 10), generator=generator).tolist()
    return model, prompts, DecodeConfig(gen_length=16, steps=16, block_length=4)


def measure(model, prompts, config, sampler: str, params: dict) -> list[dict]:
    seeds = list(range(len(prompts)))
    base = generate(model, prompts, build_sampler(sampler, **params), config, seeds)
    rows = []
    for cache in ("none", "prefix", "dual"):
        recorder = Recorder(build_sampler(sampler, **params), model, prompts)
        import dataclasses

        out = generate(model, prompts, recorder, dataclasses.replace(config, cache=cache), seeds)
        agree = sum(a == b for r, s in zip(out, base) for a, b in zip(r.tokens, s.tokens))
        total = sum(len(s.tokens) for s in base)
        rows.append({
            "model": model.name.split("/")[-1], "sampler": sampler, **params, "cache": cache,
            "token_agreement": agree / total,
            "later_steps": recorder.later_steps,
            "max_abs_logit_diff": recorder.max_diff,
            "argmax_flips_share": recorder.flipped / recorder.slots if recorder.slots else 0.0,
            "first_step_max_abs_logit_diff": recorder.first_max_diff,
            "nfe": sum(r.nfe for r in out) / len(out),
            "tokens_processed": sum(r.tokens_processed for r in out) / len(out),
            "forward_flops": sum(r.forward_flops for r in out) / len(out),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/cache_error")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for setting in (builtin_setting(), stand_in_setting(folder, "llada"), stand_in_setting(folder, "dream")):
            for sampler, params in (("confidence", {}), ("threshold", {"threshold": 0.9})):
                rows += measure(*setting, sampler, params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cache_error.json").write_text(json.dumps(rows, indent=1) + "\n")
    header = ["model", "sampler", "cache", "token agreement", "later steps", "max |dlogit|", "argmax flips",
              "first-step max |dlogit|", "NFE", "tokens/seq", "fwd GFLOPs/seq"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        name = r["sampler"] + (f" tau={r['threshold']}" if "threshold" in r else "")
        lines.append(f"| {r['model']} | {name} | {r['cache']} | {r['token_agreement']:.3f} | {r['later_steps']} | "
                     f"{r['max_abs_logit_diff']:.3g} | {r['argmax_flips_share']:.3f} | "
                     f"{r['first_step_max_abs_logit_diff']:.3g} | {r['nfe']:.2f} | {r['tokens_processed']:.1f} | "
                     f"{r['forward_flops'] / 1e9:.4f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
