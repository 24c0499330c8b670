"""Masked-entropy trajectories H_t (TABES eq. 8, Figure 2): decode held-out puzzles of the built-in task with
each sampler, recording H_t per step, and plot the mean trajectory of each sampler.

    python scripts/plot_entropy_trajectory.py                       # confidence vs BoE, 64 puzzles
    python scripts/plot_entropy_trajectory.py --samplers confidence margin boe --n 128

Writes <out>/entropy_trajectory.png (by step), entropy_trajectory_nfe.png (by NFE), entropy_trajectory.csv
(one row per sampler, puzzle and step) and entropy_trajectory.md (mean H_t per step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:tiny_sudoku")
    parser.add_argument("--data", default=str(ROOT / "tasks/tiny_sudoku/data/test.jsonl"))
    parser.add_argument("--samplers", nargs="+", default=["confidence", "boe"])
    parser.add_argument("--n", type=int, default=64, help="number of puzzles")
    parser.add_argument("--gen-length", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "results/bench_boe"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from boe_eval.analysis.trajectory import mean_trajectory, plot_entropy_trajectory, trajectory_frame
    from boe_eval.decoding import DecodeConfig, generate_batched
    from boe_eval.models import load_denoiser
    from boe_eval.samplers import build_sampler
    from boe_eval.tiny.sudoku import prompt

    torch.set_num_threads(args.threads)
    denoiser = load_denoiser(args.model)
    puzzles = [json.loads(line)["puzzle"] for line in Path(args.data).read_text().splitlines()[: args.n]]
    prompts = [denoiser.tokenizer.encode(prompt(p), add_special_tokens=False) for p in puzzles]
    config = DecodeConfig(gen_length=args.gen_length, steps=args.steps, record_trajectory=True)
    results = {
        name: generate_batched(denoiser, prompts, build_sampler(name), config, seeds=list(range(len(prompts))),
                               batch_size=args.batch_size, progress=False)
        for name in args.samplers
    }
    frame = trajectory_frame(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "entropy_trajectory.csv", index=False)
    title = f"{Path(str(args.model)).name}: mean masked entropy, {len(prompts)} puzzles"
    plot_entropy_trajectory(frame, out / "entropy_trajectory.png", by="step", title=title)
    plot_entropy_trajectory(frame, out / "entropy_trajectory_nfe.png", by="nfe", title=title)
    table = mean_trajectory(frame).pivot(index="step", columns="sampler", values="mean")[list(args.samplers)]
    text = (
        f"Mean masked entropy H_t (nats) per step, {len(prompts)} puzzles, model {args.model}, "
        f"gen_length {args.gen_length}, steps {args.steps}\n\n"
        f"command: python scripts/plot_entropy_trajectory.py {' '.join(argv if argv is not None else sys.argv[1:])}\n\n"
        + table.to_markdown(floatfmt=".3f")
        + "\n"
    )
    (out / "entropy_trajectory.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
