#!/usr/bin/env python
"""Train a built-in small MDM from data the project generates itself (CPU, minutes).

    python scripts/train_tiny.py sudoku                       # -> boe_eval/tiny/checkpoints/tiny_sudoku
    python scripts/train_tiny.py sudoku --steps 5 --out /tmp/x  # smoke test
    python scripts/train_tiny.py sudoku --write-test-set      # regenerate tasks/tiny_sudoku/data/test.jsonl

The held-out test set (tasks/tiny_sudoku/data/test.jsonl) and a validation set are generated with
their own seeds; no training puzzle equals a test or validation puzzle.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from boe_eval.tiny import sudoku  # noqa: E402
from boe_eval.tiny.training import TrainConfig, train  # noqa: E402

TEST_FILE = REPO / "tasks" / "tiny_sudoku" / "data" / "test.jsonl"


def sudoku_sets() -> tuple[list[dict], list[dict]]:
    test = sudoku.make_split(sudoku.TEST_SEED, 1000, sudoku.TEST_BLANKS)
    validation = sudoku.make_split(sudoku.VALIDATION_SEED, 512, sudoku.TEST_BLANKS, exclude={d["puzzle"] for d in test})
    return test, validation


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["sudoku"], help="which built-in task to train on")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps (default 1500)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "boe_eval" / "tiny" / "checkpoints" / "tiny_sudoku")
    parser.add_argument("--write-test-set", action="store_true", help="(re)write the committed test set and exit")
    args = parser.parse_args(argv)

    test, validation = sudoku_sets()
    if args.write_test_set:
        TEST_FILE.parent.mkdir(parents=True, exist_ok=True)
        with TEST_FILE.open("w") as fh:
            for doc in test:
                fh.write(json.dumps(doc) + "\n")
        print(f"wrote {len(test)} puzzles to {TEST_FILE}")
        return
    held_out = {d["puzzle"] for d in test} | {d["puzzle"] for d in validation}
    stream = sudoku.training_stream(sudoku.TRAIN_SEED + args.seed, exclude=held_out)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, threads=args.threads, seed=args.seed)
    pairs = [(sudoku.prompt(d["puzzle"]), d["solution"]) for d in validation]
    best = train(stream, pairs, config, args.out)
    best.update(command=" ".join(["python", "scripts/train_tiny.py", *(argv or sys.argv[1:])]),
                hardware=f"{platform.machine()} CPU, {config.threads} torch thread(s)", config=vars(config))
    (args.out / "training.json").write_text(json.dumps(best, indent=2) + "\n")
    print(json.dumps(best, indent=2))


if __name__ == "__main__":
    main()
