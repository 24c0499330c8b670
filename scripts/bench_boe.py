"""Benchmark: what a BoE decoding step costs next to a confidence step, and what ActiveQueryAttention saves.

For each model shape and canvas length L (prompt L/2 tokens, generation L/2 slots, all masked: |M_t| = L/2) it
times, in the same run:
- one decoding step of confidence and of BoE variants (dense backward; faithful AQA; efficient AQA with the
  default active set A_t = C_t + objective rows = M_t; efficient AQA with the paper's A_t = C_t at rho = 0.10,
  0.25, 0.50, objective M_t), each through the real decoding loop (`generate`, one step committing the L/2
  slots), as a ratio to the confidence step;
- the surrogate backward inside that step (BoE's one metered backward), as a ratio to the dense backward;
next to the FLOP-count prediction of both ratios (2 FLOPs per multiply-add; backward w.r.t. the input embeddings
only, so no weight gradients; CPU flash-attention backward = 5 L x L x d matmuls, its efficient form = 7 per
active row: recompute 2 + backward 5). The FLOP model is checked against torch's FlopCounterMode at the
smallest length.

    python scripts/bench_boe.py                          # L in 128 256 512 1024 2048, both shapes
    python scripts/bench_boe.py --lengths 128 256 --repeats 1

Models: "builtin" = the built-in tiny_sudoku BERT shape (hidden 128, 4 layers, 4 heads; random weights with a
position table of length L, since the checkpoint holds 64 positions) and "realistic" = a random BERT of 8 layers,
hidden 512, 8 heads, intermediate 2048 (the project's 100-token character vocabulary for both). Timings are
medians of --repeats runs (default 1, to finish in minutes on 2 CPU cores) after one warm-up step per model and
length, on CPU with --threads threads. Writes <out>/bench_boe.md,
bench_boe.csv and bench_boe.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Variant:
    label: str
    params: dict | None  #: BoE parameters; None = confidence
    active: str = ""  #: "dense", "objective" (A_t = C_t + objective rows) or "candidates" (A_t = C_t)


def variants(rhos: list[float]) -> list[Variant]:
    out = [
        Variant("confidence", None),
        Variant("BoE dense", {"aqa": False, "rho": 0.25}, "dense"),
        Variant("BoE faithful-AQA", {"aqa_mode": "faithful", "rho": 0.25}, "objective"),
        Variant("BoE efficient-AQA A=M_t", {"aqa_mode": "efficient", "rho": 0.25}, "objective"),
    ]
    for rho in rhos:
        params = {"aqa_mode": "efficient", "rho": rho, "active_set": "candidates", "objective": "masked"}
        out.append(Variant(f"BoE efficient-AQA A=C_t rho={rho:g}", params, "candidates"))
    return out


# ------------------------------------------------------------------------------------------ models


def build_model(kind: str, max_length: int):
    """A random BertForMaskedLM of the named shape behind the Denoiser contract, SDPA attention, eval mode."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from boe_eval.models import Denoiser
    from boe_eval.models.loading import BUILTIN_DIR
    from boe_eval.tiny.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    if kind == "builtin":
        config = BertConfig.from_pretrained(BUILTIN_DIR / "tiny_sudoku")
    elif kind == "realistic":
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                            intermediate_size=2048, pad_token_id=tokenizer.pad_token_id)
    else:
        raise SystemExit(f"model {kind!r} is unknown: choose builtin or realistic")
    config.max_position_embeddings = max(max_length, 64)
    config.vocab_size = len(tokenizer)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = BertForMaskedLM(config).eval()
    forbidden = [tokenizer.pad_token_id, tokenizer.unk_token_id]
    return Denoiser(model, tokenizer, mask_id=tokenizer.mask_token_id, forbidden_ids=forbidden, name=f"bench-{kind}")


# ------------------------------------------------------------------------------------------ FLOP model


def forward_flops(cfg, length: int) -> float:
    """One BERT forward: per layer Q, K, V, O (8 L d^2), MLP (4 L d f), attention (4 L^2 d); MLM head."""
    d, f, v, layers = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
    per_layer = 8 * length * d * d + 4 * length * d * f + 4 * length * length * d
    return layers * per_layer + 2 * length * d * d + 2 * length * d * v


def backward_flops(cfg, length: int, active_rows: int | None) -> float:
    """Backward w.r.t. the input embeddings (no weight gradients): each linear costs its forward again; the
    attention backward costs 10 L^2 d dense (CPU flash kernel: 5 matmuls), or 14 |A| L d with efficient AQA."""
    d, f, v, layers = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
    linear = layers * (8 * length * d * d + 4 * length * d * f) + 2 * length * d * d + 2 * length * d * v
    rows = length if active_rows is None else active_rows
    attention = layers * (10 if active_rows is None else 14) * rows * length * d
    return linear + attention


def active_rows(variant: Variant, length: int, rho: float) -> int | None:
    masked = length // 2
    if variant.active == "candidates":
        return math.ceil(rho * masked)
    if variant.active == "objective":
        return masked  # C_t + the rows predicting M_t \ C_t = M_t
    return None


def check_flop_model(denoiser, length: int) -> tuple[float, float, float, float]:
    """(counted, predicted) FLOPs of a no-grad forward and of a dense backward, with torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    mapping = {
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *a, out_shape=None, **kw: sdpa_flop_count(q, k, v),
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda g, q, k, v, *a, out_shape=None, **kw: sdpa_backward_flop_count(g, q, k, v),
    }
    ids = torch.randint(5, 60, (1, length))
    inputs = denoiser.embed(ids).detach().requires_grad_(True)
    forward = FlopCounterMode(display=False, custom_mapping=mapping)
    with forward:
        logits = denoiser.logits(inputs_embeds=inputs)
    backward = FlopCounterMode(display=False, custom_mapping=mapping)
    with backward:
        torch.autograd.grad(logits.float().logsumexp(-1).sum(), inputs)
    cfg = denoiser.model.config
    return forward.get_total_flops(), forward_flops(cfg, length), backward.get_total_flops(), backward_flops(cfg, length, None)


# ------------------------------------------------------------------------------------------ timing


@contextlib.contextmanager
def backward_timer(seconds: list[float]):
    """Within the context, every metered backward (`MeteredDenoiser.grad`, the surrogate backward of BoE) also
    appends its wall time to `seconds` (a benchmark instrument; the meter itself only keeps totals)."""
    from boe_eval.decoding.meter import MeteredDenoiser

    original = MeteredDenoiser.grad

    def timed(self, rows, output, inputs):
        start = time.perf_counter()
        gradient = original(self, rows, output, inputs)
        seconds.append(time.perf_counter() - start)
        return gradient

    MeteredDenoiser.grad = timed
    try:
        yield
    finally:
        MeteredDenoiser.grad = original


def time_step(denoiser, prompt: list[int], gen_length: int, variant: Variant, repeats: int) -> tuple[float, float]:
    """Median wall time of one decoding step through the real loop (one step commits every generation slot) and
    of the surrogate backward inside it (0 for confidence)."""
    from boe_eval.decoding import DecodeConfig, generate
    from boe_eval.samplers import build_sampler

    steps, backwards = [], []
    for _ in range(repeats):
        sampler = build_sampler("confidence") if variant.params is None else build_sampler("boe", **variant.params)
        seconds: list[float] = []
        with backward_timer(seconds):
            start = time.perf_counter()
            generate(denoiser, [prompt], sampler, DecodeConfig(gen_length=gen_length, steps=1))
            steps.append(time.perf_counter() - start)
        backwards.append(sum(seconds))
    return statistics.median(steps), statistics.median(backwards)


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--models", nargs="+", default=["builtin", "realistic"])
    parser.add_argument("--rhos", type=float, nargs="+", default=[0.10, 0.25, 0.50])
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per variant (median), after one warm-up")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "results/bench_boe"))
    args = parser.parse_args(argv)
    if any(length < 8 or length % 2 for length in args.lengths):
        raise SystemExit(f"--lengths {args.lengths} is invalid: every length must be an even number >= 8")

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    rows, checks = [], []
    for kind in args.models:
        denoiser = build_model(kind, max(args.lengths))
        cfg = denoiser.model.config
        counted_f, predicted_f, counted_b, predicted_b = check_flop_model(denoiser, min(args.lengths))
        checks.append(f"{kind}, L={min(args.lengths)}: forward counted {counted_f:.4g} vs model {predicted_f:.4g}; "
                      f"dense backward counted {counted_b:.4g} vs model {predicted_b:.4g}")
        for length in args.lengths:
            generator = torch.Generator().manual_seed(length)
            prompt = torch.randint(5, 60, (length // 2,), generator=generator).tolist()
            gen_length = length - len(prompt)
            time_step(denoiser, prompt, gen_length, variants(args.rhos)[1], 1)  # warm-up (allocations, threads)
            conf_step = dense_backward = None
            for variant in variants(args.rhos):
                step, backward = time_step(denoiser, prompt, gen_length, variant, args.repeats)
                rho = 0.0 if variant.params is None else variant.params["rho"]
                active = active_rows(variant, length, rho)
                row = {"model": kind, "L": length, "variant": variant.label,
                       "active_rows_fraction": (active / length) if active is not None else None, "step_s": step}
                if variant.params is None:
                    conf_step = step
                    row.update(step_ratio=1.0, predicted_step_ratio=1.0)
                else:
                    if variant.active == "dense":
                        dense_backward = backward
                    efficient = variant.params.get("aqa_mode") == "efficient" and variant.params.get("aqa", True)
                    predicted_backward = backward_flops(cfg, length, active if efficient else None)
                    row.update(
                        step_ratio=step / conf_step,
                        predicted_step_ratio=(2 * forward_flops(cfg, length) + predicted_backward) / forward_flops(cfg, length),
                        backward_s=backward,
                        backward_vs_dense=backward / dense_backward,
                        predicted_backward_vs_dense=predicted_backward / backward_flops(cfg, length, None),
                    )
                rows.append(row)
                print(f"{kind:9s} L={length:5d} {variant.label:34s} step {step:8.4f}s  "
                      + (f"backward {row['backward_s']:8.4f}s" if "backward_s" in row else ""), flush=True)

    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "bench_boe.csv", index=False)
    plot(table, out / "bench_boe.png")
    shown = table.rename(columns={"active_rows_fraction": "|A|/L"})
    command = "python scripts/bench_boe.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(
        [
            "# BoE step cost and ActiveQueryAttention savings",
            "",
            f"command: `{command.strip()}`",
            f"machine: {platform.machine()} CPU, {args.threads} torch thread(s), torch {torch.__version__}; "
            f"timings: median of {args.repeats} run(s) per variant after one warm-up step per model and length",
            "",
            "State: prompt L/2 tokens + L/2 masked slots (|M_t| = L/2). step_ratio = BoE step / confidence step "
            "(same run); backward_vs_dense = surrogate backward / dense backward; predicted_* = the same ratios "
            "from FLOP counts (a step = 2 forwards + 1 backward for BoE, 1 forward for confidence).",
            "",
            "FLOP model check (torch FlopCounterMode): " + "; ".join(checks),
            "",
            shown.to_markdown(index=False, floatfmt=".3f"),
            "",
        ]
    )
    (out / "bench_boe.md").write_text(text)
    (out / "bench_boe.json").write_text(json.dumps({"command": command.strip(), "threads": args.threads}, indent=2))
    print(text)
    return 0


def plot(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(2, len(models), figsize=(5.5 * len(models), 7), squeeze=False)
    for column, kind in enumerate(models):
        part = table[(table["model"] == kind) & (table["variant"] != "confidence")]
        for label, group in part.groupby("variant", sort=False):
            line = axes[0, column].plot(group["L"], group["step_ratio"], marker="o", label=label)[0]
            axes[0, column].plot(group["L"], group["predicted_step_ratio"], ls=":", color=line.get_color())
            axes[1, column].plot(group["L"], group["backward_vs_dense"], marker="o", color=line.get_color(), label=label)
            axes[1, column].plot(group["L"], group["predicted_backward_vs_dense"], ls=":", color=line.get_color())
        axes[0, column].set_title(f"{kind}: BoE step / confidence step (dotted: FLOPs)")
        axes[1, column].set_title(f"{kind}: surrogate backward / dense backward")
        for ax in axes[:, column]:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("canvas length L")
            ax.grid(alpha=0.3)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
