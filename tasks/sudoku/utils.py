"""Sudoku 4x4, d1 protocol: data, prompt and metrics (scoring in boe_eval.metrics.sudoku)."""

from __future__ import annotations

import numpy as np

from boe_eval.harness.task_data import local_dataset
from boe_eval.metrics import sudoku

DATA = {"test": "data/4x4_test_sudoku.csv"}
D1_SUBSAMPLE = 256
D1_SEED = 42

# d1 eval/sudoku.py: SUDOKU_SYSTEM_PROMPT (leading and trailing newline included), placed at the
# start of the user turn.
D1_SYSTEM_PROMPT = """
Please solve the following 4x4 Sudoku puzzle. The puzzle is provided as a 16-character string reading left-to-right, top-to-bottom, where '0' represents empty cells.

Rules:
- Fill empty cells with digits 1-4
- Each row must contain digits 1-4 exactly once
- Each column must contain digits 1-4 exactly once
- Each 2x2 box must contain digits 1-4 exactly once

Important: Your solution must be a COMPLETE 16-character string with only the digits 1-4, representing your final solved grid.

Respond in this exact format:
<reasoning>
Your step-by-step solving process
</reasoning>
<answer>
[16-character solution string with no spaces or separators]
</answer>
"""


def d1_subsample(records: list[dict]) -> list[dict]:
    """d1's evaluation subset: after `np.random.seed(42)`, `np.random.choice(500, 256, replace=False)`
    (d1 eval.py seeds numpy with 42 and draws this before any other numpy draw), in that order."""
    order = np.random.RandomState(D1_SEED).choice(len(records), D1_SUBSAMPLE, replace=False)
    return [records[int(i)] for i in order]


def load(**kwargs):
    """d1's 256-puzzle subset of the 500 test puzzles."""
    return local_dataset(__file__, DATA, transform=d1_subsample)


def load_all(**kwargs):
    """All 500 test puzzles."""
    return local_dataset(__file__, DATA)


def d1_prompt(doc: dict) -> str:
    """User turn of d1: system prompt, blank line, question."""
    return D1_SYSTEM_PROMPT + "\n\n" + f"Solve the following Sudoku puzzle: {doc['Puzzle']}\n"


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return sudoku.score(results[0], doc["Puzzle"], doc["Solution"])
