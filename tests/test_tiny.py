"""The built-in tiny_sudoku task and model: data generation, held-out split, metric, training."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from boe_eval.metrics.sudoku import UNITS
from boe_eval.tiny import sudoku

REPO = Path(__file__).resolve().parents[1]
TEST_FILE = REPO / "tasks" / "tiny_sudoku" / "data" / "test.jsonl"


def test_all_grids_are_the_288_valid_4x4_sudokus():
    grids = sudoku.all_grids()
    assert len(grids) == len(set(grids)) == 288
    for grid in grids:
        assert all(sorted(grid[i] for i in unit) == list("1234") for unit in UNITS)


def test_committed_test_set_is_the_generated_one_and_held_out():
    docs = [json.loads(line) for line in TEST_FILE.read_text().splitlines()]
    assert docs == sudoku.make_split(sudoku.TEST_SEED, 1000, sudoku.TEST_BLANKS)
    assert len({d["puzzle"] for d in docs}) == 1000
    for d in docs:
        blanks = d["puzzle"].count("0")
        assert sudoku.TEST_BLANKS[0] <= blanks <= sudoku.TEST_BLANKS[1]
        assert all(p in ("0", s) for p, s in zip(d["puzzle"], d["solution"]))
    test_puzzles = {d["puzzle"] for d in docs}
    stream = sudoku.training_stream(sudoku.TRAIN_SEED, exclude=test_puzzles)
    drawn = [p for p, _ in itertools.islice(stream, 20000)]
    assert not {sudoku.prompt(p) for p in test_puzzles} & set(drawn)
    # the exclusion is what keeps them apart: without it, test puzzles do appear in the stream
    unfiltered = [p for p, _ in itertools.islice(sudoku.training_stream(sudoku.TRAIN_SEED, exclude=set()), 20000)]
    assert {sudoku.prompt(p) for p in test_puzzles} & set(unfiltered)


def test_metric_scores_gold_one_and_corruptions_zero():
    docs = [json.loads(line) for line in TEST_FILE.read_text().splitlines()][:200]
    for d in docs:
        assert sudoku.score(d["solution"], d["puzzle"], d["solution"]) == {"solved": 1.0, "cell_accuracy": 1.0}
        first_blank = d["puzzle"].index("0")
        wrong = "1" if d["solution"][first_blank] != "1" else "2"
        corrupted = d["solution"][:first_blank] + wrong + d["solution"][first_blank + 1 :]
        out = sudoku.score(corrupted, d["puzzle"], d["solution"])
        assert out["solved"] == 0.0 and out["cell_accuracy"] < 1.0
        assert sudoku.score(d["solution"][:15], d["puzzle"], d["solution"])["solved"] == 0.0


def test_training_script_runs_and_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "ckpt"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train_tiny.py"), "sudoku", "--steps", "3",
                           "--batch-size", "8", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads((out / "training.json").read_text())
    assert info["step"] in (1, 2, 3) and info["val_loss"] > 0
    from boe_eval.models import load_denoiser

    den = load_denoiser(out)
    assert den.mask_id == den.tokenizer.mask_token_id


def test_shipped_model_solves_puzzles_and_parallel_decoding_costs_accuracy():
    """The shipped checkpoint is a real solver (far above chance) whose accuracy depends on the
    decoding: two tokens per step loses puzzles that one token per step solves."""
    from boe_eval.decoding import DecodeConfig, generate_batched
    from boe_eval.models import load_denoiser
    from boe_eval.samplers import build_sampler

    den = load_denoiser("builtin:tiny_sudoku")
    docs = [json.loads(line) for line in TEST_FILE.read_text().splitlines()][:100]
    prompts = [den.tokenizer(sudoku.prompt(d["puzzle"]), add_special_tokens=False).input_ids for d in docs]

    def solved(name: str, steps: int) -> float:
        res = generate_batched(den, prompts, build_sampler(name), DecodeConfig(gen_length=16, steps=steps),
                               list(range(len(docs))), batch_size=100, progress=False)
        return sum(sudoku.score(r.text, d["puzzle"], d["solution"])["solved"] for r, d in zip(res, docs)) / len(docs)

    one_per_step, two_per_step = solved("confidence", 16), solved("confidence", 8)
    assert 0.5 < two_per_step < one_per_step <= 1.0
