"""Agreement of the d1 tasks' `*_d1code` metrics with d1's own scoring code, case by case.

tests/data/d1_agreement/<task>.jsonl holds LLaDA-like full-canvas decodes (written by
scripts/make_d1_agreement_data.py) with the verdict of d1's code (`d1`). The verdicts are recomputed
here by `tests/d1_reference.py`, an independent step-by-step restatement of d1's parse_and_get_acc.py
(so stale data fails), and the project's metrics must reproduce every one of them: the extracted
answer and the verdict. (The restatement was checked against d1's own functions on these cases with
`make_d1_agreement_data.py --against`, and the metrics against d1's released generations with
scripts/check_d1_agreement.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from d1_reference import VERDICTS

from boe_eval.metrics import countdown, gsm8k, math500, sudoku

DATA = Path(__file__).parent / "data" / "d1_agreement"
TASKS = ("gsm8k", "math500", "countdown", "sudoku")
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")  # the reference evals `(93)(30)`


def _cases(task: str) -> list[dict]:
    with (DATA / f"{task}.jsonl").open() as fh:
        return [json.loads(line) for line in fh]


def _project(task: str, case: dict) -> tuple[dict, dict]:
    """(the project's d1code reading in the reference's terms, all the task's metrics)."""
    text = case["response"]
    if task == "gsm8k":
        scores = gsm8k.score_d1(text, case["answer"])
        return {"extracted": gsm8k.d1code_answer(text), "correct": scores["boxed_answer_accuracy_d1code"] == 1.0}, scores
    if task == "math500":
        scores = math500.score_d1(text, case["answer"])
        return {"extracted": math500.d1code_answer(text), "correct": scores["math_accuracy_d1code"] == 1.0}, scores
    if task == "countdown":
        scores = countdown.score(text, case["numbers"], case["target"])
        return {"extracted": countdown.d1code_expression(text), "correct": scores["solved_rate_d1code"] == 1.0}, scores
    scores = sudoku.score(text, case["puzzle"], case["solution"])
    grid = sudoku.d1code_grid(text)
    padded = (grid + "0" * 16)[:16] if grid else ""
    empties = sudoku.empty_cells(case["puzzle"])
    cells = scores["cell_accuracy_d1code"]
    return {"extracted": padded, "correct_cells": round(cells * len(empties)), "cell_accuracy": cells}, scores


@pytest.mark.parametrize("task", TASKS)
def test_the_stored_verdicts_are_the_reference_restatements(task):
    for case in _cases(task):
        assert VERDICTS[task](case) == case["d1"], case["id"]


@pytest.mark.parametrize("task", TASKS)
def test_the_d1code_metric_agrees_with_d1_on_every_case(task):
    cases = _cases(task)
    agree = 0
    for case in cases:
        mine, _ = _project(task, case)
        assert mine == case["d1"], (case["id"], case["note"])
        agree += 1
    assert agree == len(cases) >= 18
    print(f"{task}: d1code agrees with d1 on {agree}/{len(cases)}")


@pytest.mark.parametrize(
    "task, d1code_key, semantic_key",
    [
        ("gsm8k", "boxed_answer_accuracy_d1code", "boxed_answer_accuracy_semantic"),
        ("math500", "math_accuracy_d1code", "math_verify_accuracy_semantic"),
        ("countdown", "solved_rate_d1code", "solved_rate_semantic"),
        ("sudoku", "cell_accuracy_d1code", "cell_accuracy_semantic"),
    ],
)
def test_the_cases_separate_the_two_readings_both_ways(task, d1code_key, semantic_key):
    # the cases are worth something only if d1's code and the format's intent disagree on some of
    # them, in both directions, and each verdict occurs
    scores = [_project(task, case)[1] for case in _cases(task)]
    d1code_only = sum(s[d1code_key] > s[semantic_key] for s in scores)
    semantic_only = sum(s[semantic_key] > s[d1code_key] for s in scores)
    assert d1code_only >= 2 and semantic_only >= 2, (d1code_only, semantic_only)
    assert {0.0, 1.0} <= {s[d1code_key] for s in scores}
