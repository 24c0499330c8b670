#!/usr/bin/env python
"""Train a built-in small MDM from data the project generates itself (CPU, minutes).

    python scripts/train_tiny.py addition                          # -> boe_eval/tiny/checkpoints/tiny_addition
    python scripts/train_tiny.py sudoku --steps 5 --out /tmp/x     # smoke test
    python scripts/train_tiny.py addition --write-test-set         # regenerate tasks/tiny_addition/data/test.jsonl
    python scripts/train_tiny.py pivot --stop-at 1000              # a chunk; continue with --resume

Each task's held-out test set (tasks/<name>/data/test.jsonl) and validation set are generated with
their own seeds; no training prompt equals a test or validation prompt. Training is budgeted in
optimiser steps and is deterministic on one CPU thread (the default: other jobs share the cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import fields, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from boe_eval.tiny.registry import TINY_TASKS, get_tiny_task  # noqa: E402
from boe_eval.tiny.training import TrainConfig, train  # noqa: E402


def test_file(name: str) -> Path:
    return REPO / "tasks" / name / "data" / "test.jsonl"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    choices = sorted({n.removeprefix("tiny_") for n in TINY_TASKS} | set(TINY_TASKS))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=choices, help="which built-in task to train on")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the task's)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the task's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snapshot-every", type=int, default=0,
                        help="also save the model every N steps (multiple of the evaluation interval) under OUT/snapshots/")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/train_state.pt (bit-exactly where an uninterrupted run would be)")
    parser.add_argument("--stop-at", type=int, help="end this chunk after step N (resume later with --resume)")
    parser.add_argument("--out", type=Path, help="checkpoint folder (default boe_eval/tiny/checkpoints/<name>)")
    parser.add_argument("--write-test-set", action="store_true", help="(re)write the committed test set and exit")
    args = parser.parse_args(argv)

    task = get_tiny_task(args.task)
    test = task.test_set()
    if args.write_test_set:
        path = test_file(task.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            for doc in test:
                fh.write(json.dumps(doc) + "\n")
        print(f"wrote {len(test)} items to {path}")
        return
    validation = task.validation_set(test)
    held_out = {task.prompt(d) for d in test} | {task.prompt(d) for d in validation}
    config = replace(TrainConfig(), **task.train_overrides)
    config = replace(config, threads=args.threads, seed=args.seed, snapshot_every=args.snapshot_every)
    if args.steps is not None:
        config = replace(config, steps=args.steps)
    if args.lr is not None:
        config = replace(config, lr=args.lr)
    if args.batch_size is not None:
        config = replace(config, batch_size=args.batch_size)
    out = args.out or REPO / "boe_eval" / "tiny" / "checkpoints" / task.name
    stream = task.training_stream(task.train_seed + args.seed, exclude=held_out)
    pairs = [(task.prompt(d), task.answer(d)) for d in validation]
    best = train(stream, pairs, config, out, gen_length=task.gen_length, resume=args.resume, stop_at=args.stop_at)
    best.update(
        command=" ".join(["python", "scripts/train_tiny.py", *argv]),
        hardware=f"{platform.machine()} CPU, {config.threads} torch thread(s)",
        config={f.name: getattr(config, f.name) for f in fields(config)},
    )
    (out / "training.json").write_text(json.dumps(best, indent=2) + "\n")
    print(json.dumps({k: v for k, v in best.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
