"""Score a built-in model with each sampler on its task's held-out test set (the numbers of the model
cards), straight through the decoding loop: `generate_batched` + the task's own metric, mean and a
95% Wilson interval per sampler.

    python -m boe_eval.tiny.evaluate tiny_addition --samplers confidence,margin,entropy,random
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from boe_eval.analysis.intervals import accuracy_ci
from boe_eval.decoding import DecodeConfig, generate_batched
from boe_eval.harness.task_data import read_records
from boe_eval.models import load_denoiser
from boe_eval.models.denoiser import Denoiser
from boe_eval.samplers import build_sampler
from boe_eval.tiny.registry import get_tiny_task
from boe_eval.tiny.task import TinyTask

REPO = Path(__file__).resolve().parents[2]
GREEDY_SAMPLERS = ("confidence", "margin", "entropy", "random")


@dataclass
class SamplerScore:
    sampler: str
    steps: int
    n: int
    metrics: dict[str, float]  #: mean of each metric over the test items
    low: float  #: 95% interval of the primary metric
    high: float
    seconds: float


def test_docs(task: TinyTask, limit: int | None = None) -> list[dict]:
    """The committed held-out test set of `task` (first `limit` items)."""
    docs = read_records(REPO / "tasks" / task.name / "data" / "test.jsonl")
    return docs[:limit] if limit else docs


def score_sampler(
    denoiser: Denoiser,
    task: TinyTask,
    docs: list[dict],
    sampler: str,
    steps: int | None = None,
    batch_size: int = 250,
    seed: int = 1234,
) -> SamplerScore:
    """Decode every doc with `sampler` (T = 0, one block) and score it with the task's metric. Row i
    is seeded with seed + i, so random order is reproducible and independent of the batching."""
    steps = steps or task.steps
    prompts = [denoiser.tokenizer(task.prompt(d), add_special_tokens=False).input_ids for d in docs]
    config = DecodeConfig(gen_length=task.gen_length, steps=steps, until=task.until)
    start = time.perf_counter()
    results = generate_batched(denoiser, prompts, build_sampler(sampler), config,
                               [seed + i for i in range(len(docs))], batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    rows = [task.score(r.text, d) for r, d in zip(results, docs)]
    metrics = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    _, low, high, _ = accuracy_ci([r[task.primary_metric] for r in rows])
    return SamplerScore(sampler, steps, len(docs), metrics, low, high, seconds)


def markdown_table(scores: list[SamplerScore], primary: str) -> str:
    """Model-card table: primary metric in % with its 95% Wilson interval, then the other metrics."""
    others = [k for k in scores[0].metrics if k != primary]
    head = f"| sampler | steps | {primary} % | 95% CI | " + " | ".join(f"{k} %" for k in others) + " |"
    lines = [head, "|" + "---|" * (4 + len(others))]
    for s in scores:
        extra = " | ".join(f"{100 * s.metrics[k]:.1f}" for k in others)
        lines.append(f"| {s.sampler} | {s.steps} | {100 * s.metrics[primary]:.1f} | "
                     f"[{100 * s.low:.1f}, {100 * s.high:.1f}] | {extra} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", help="built-in task name, e.g. tiny_addition")
    parser.add_argument("--model", help="model directory (default builtin:<task>)")
    parser.add_argument("--samplers", default=",".join(GREEDY_SAMPLERS))
    parser.add_argument("--steps", default=None, help="comma-separated step counts (default: the task's)")
    parser.add_argument("--limit", type=int, default=None, help="first N test items (default all)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the scores as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = get_tiny_task(args.task)
    denoiser = load_denoiser(args.model or f"builtin:{task.name}")
    docs = test_docs(task, args.limit)
    steps_list = [int(s) for s in args.steps.split(",")] if args.steps else [task.steps]
    scores = []
    for steps in steps_list:
        for name in args.samplers.split(","):
            s = score_sampler(denoiser, task, docs, name, steps, args.batch_size)
            scores.append(s)
            print(f"{name:12s} steps={steps:3d} {task.primary_metric}={100 * s.metrics[task.primary_metric]:.1f} "
                  f"[{100 * s.low:.1f}, {100 * s.high:.1f}] " +
                  " ".join(f"{k}={100 * v:.1f}" for k, v in s.metrics.items() if k != task.primary_metric) +
                  f" ({s.seconds:.0f}s)", flush=True)
    print(markdown_table(scores, task.primary_metric))
    if args.json:
        args.json.write_text(json.dumps([s.__dict__ for s in scores], indent=2) + "\n")


if __name__ == "__main__":
    main()
