"""Sudoku and Countdown metrics (d1 protocol, d1code and semantic readings) on the full vendored test
sets: reference answers score 1, corrupted answers 0, plus the extraction rules case by case
(agreement with d1's code on many more cases: tests/test_d1_agreement.py). The expectations come from
independent brute force (all 4x4 grids; all Countdown expressions in exact fractions)."""

from __future__ import annotations

import csv
import itertools
import json
import time
from fractions import Fraction
from pathlib import Path

import pytest

from boe_eval.metrics import countdown, sudoku

TASKS = Path(__file__).resolve().parents[1] / "tasks"


def d1_response(answer: str, reasoning: str = "Fill the singles first.") -> str:
    """A response in d1's format as the adapter returns it for a LLaDA canvas: the `<reasoning>`
    prefill is part of the prompt and the whole canvas is decoded with its special tokens."""
    return f"\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer><|eot_id|>" + "<|endoftext|>" * 3


SUDOKU_KEYS = ("cell_accuracy_d1code", "cell_accuracy_semantic", "solved_rate_semantic", "reference_match_semantic")


def sudoku_scores(cells: float, solved: float, reference: float) -> dict[str, float]:
    """The four Sudoku metrics when both readings find the same grid."""
    return dict(zip(SUDOKU_KEYS, (cells, cells, solved, reference)))


# ------------------------------------------------------------------------------------ Sudoku
def _puzzles() -> list[tuple[str, str]]:
    with (TASKS / "sudoku" / "data" / "4x4_test_sudoku.csv").open(newline="") as fh:
        return [(row["Puzzle"], row["Solution"]) for row in csv.DictReader(fh)]


def _all_grids() -> list[str]:
    """Every valid 4x4 Sudoku grid, by brute force over row permutations."""
    rows = ["".join(p) for p in itertools.permutations("1234")]
    grids = []
    for r1, r2, r3, r4 in itertools.product(rows, repeat=4):
        cols_ok = all(len({r1[c], r2[c], r3[c], r4[c]}) == 4 for c in range(4))
        boxes_ok = all(
            len({top[c], top[c + 1], bottom[c], bottom[c + 1]}) == 4 for top, bottom in ((r1, r2), (r3, r4)) for c in (0, 2)
        )
        if cols_ok and boxes_ok:
            grids.append(r1 + r2 + r3 + r4)
    return grids


ALL_GRIDS = _all_grids()


def _completions(puzzle: str) -> list[str]:
    return [g for g in ALL_GRIDS if all(p == "0" or p == c for p, c in zip(puzzle, g))]


def test_there_are_288_grids_and_d1s_puzzles_match_the_recorded_facts():
    puzzles = _puzzles()
    assert len(ALL_GRIDS) == 288
    assert len(puzzles) == 500
    assert all(len(sudoku.empty_cells(p)) == 8 for p, _ in puzzles)
    assert sum(len(_completions(p)) > 1 for p, _ in puzzles) == 124


def test_every_reference_solution_scores_one_on_every_metric():
    for puzzle, solution in _puzzles():
        scores = sudoku.score(d1_response(solution), puzzle, solution)
        assert scores == sudoku_scores(1.0, 1.0, 1.0), puzzle


def test_corrupted_solutions_score_zero():
    for puzzle, solution in _puzzles():
        empties = sudoku.empty_cells(puzzle)
        # every empty cell one digit off (mod 4): no empty cell right, the grid is no longer valid
        wrong = list(solution)
        for i in empties:
            wrong[i] = str(int(solution[i]) % 4 + 1)
        scores = sudoku.score(d1_response("".join(wrong)), puzzle, solution)
        assert scores == sudoku_scores(0.0, 0.0, 0.0), puzzle
        # two empty cells of the same row swapped: 6/8 cells right, but not a solution
        row_pairs = [(a, b) for a, b in itertools.combinations(empties, 2) if a // 4 == b // 4 and solution[a] != solution[b]]
        if row_pairs:
            a, b = row_pairs[0]
            swapped = list(solution)
            swapped[a], swapped[b] = swapped[b], swapped[a]
            scores = sudoku.score(d1_response("".join(swapped)), puzzle, solution)
            assert scores["cell_accuracy_d1code"] == scores["cell_accuracy_semantic"] == pytest.approx(6 / 8)
            assert scores["solved_rate_semantic"] == 0.0


def test_an_alternative_valid_solution_counts_as_solved_but_not_as_the_reference():
    checked = 0
    for puzzle, solution in _puzzles():
        for other in _completions(puzzle):
            if other == solution:
                continue
            expected_cells = sum(other[i] == solution[i] for i in sudoku.empty_cells(puzzle)) / 8
            scores = sudoku.score(d1_response(other), puzzle, solution)
            assert scores == sudoku_scores(expected_cells, 1.0, 0.0)
            checked += 1
    assert checked >= 124


def test_a_grid_that_breaks_a_given_is_not_solved():
    puzzle, solution = _puzzles()[0]
    given = next(i for i, ch in enumerate(puzzle) if ch != "0")
    # relabel two digits of the reference: still a valid grid, but it contradicts the givens
    a, b = solution[given], "1" if solution[given] != "1" else "2"
    relabelled = solution.translate(str.maketrans({a: b, b: a}))
    assert sudoku.is_solution(relabelled, "0" * 16)
    assert sudoku.score(d1_response(relabelled), puzzle, solution)["solved_rate_semantic"] == 0.0


@pytest.mark.parametrize(
    "response, d1code, semantic",
    [
        ("<answer>\n```\n3142 2431\n4213 1324\n```\n</answer>", "3142243142131324", "3142243142131324"),  # code block
        ("\nsteps\n</reasoning>\n<answer>\n3142\n2431\n4213\n1324<|eot_id|>", "3142243142131324", "3142243142131324"),
        # unclosed and nothing after it: d1's tag pattern needs a terminator, no later pattern matches
        ("\nsteps\n</reasoning>\n<answer>\n3142\n2431\n4213\n1324", "", "3142243142131324"),
        ("<answer></answer>\n3142243142131324<|endoftext|>", "3142243142131324", ""),  # after an empty tag: d1 only
        ("the grid is 3142243142131324 done", "3142243142131324", "3142243142131324"),  # bare 16 digits
        ("<answer>3142</answer>", "3142", "3142"),  # short: kept as is, padded only for cell accuracy
        ("no answer at all", "", ""),
    ],
)
def test_sudoku_extraction_follows_d1s_cascade(response, d1code, semantic):
    assert sudoku.d1code_grid(response) == d1code
    assert sudoku.extract_grid(response) == semantic


def test_short_and_long_answers_are_padded_or_cut_for_cell_accuracy_only():
    puzzle, solution = "3102200002100320", "3142243142131324"
    empties = sudoku.empty_cells(puzzle)
    short = solution[:8]  # the first 8 characters; missing cells count as wrong
    expected = sum(1 for i in empties if i < 8) / len(empties)
    assert sudoku.score(d1_response(short), puzzle, solution)["cell_accuracy_d1code"] == pytest.approx(expected)
    long = solution + "1"
    scores = sudoku.score(d1_response(long), puzzle, solution)
    assert scores["cell_accuracy_d1code"] == 1.0 and scores["solved_rate_semantic"] == 0.0


# --------------------------------------------------------------------------------- Countdown
def _problems() -> list[tuple[list[int], int]]:
    with (TASKS / "countdown" / "data" / "countdown_cd3_test.jsonl").open() as fh:
        rows = [json.loads(line) for line in fh]
    return [([int(n) for n in r["input"].split(",")], int(r["output"])) for r in rows]


def _solve(numbers: list[int], target: int) -> str | None:
    """An expression using each number once with + - * / that equals target, in exact arithmetic."""

    def build(items: list[tuple[Fraction, str]]):
        if len(items) == 1:
            yield items[0]
            return
        for i, j in itertools.permutations(range(len(items)), 2):
            (a, ea), (b, eb) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            options = [(a + b, f"({ea} + {eb})"), (a - b, f"({ea} - {eb})"), (a * b, f"({ea} * {eb})")]
            if b != 0:
                options.append((a / b, f"({ea} / {eb})"))
            for option in options:
                yield from build(rest + [option])

    for value, expression in build([(Fraction(n), str(n)) for n in numbers]):
        if value == target:
            return expression
    return None


BOTH = {"solved_rate_d1code": 1.0, "solved_rate_semantic": 1.0}
NEITHER = {"solved_rate_d1code": 0.0, "solved_rate_semantic": 0.0}


def test_every_countdown_problem_has_a_solution_that_scores_one():
    problems = _problems()
    assert len(problems) == 256
    for numbers, target in problems:
        expression = _solve(numbers, target)
        assert expression is not None, (numbers, target)
        assert countdown.score(d1_response(f"\\boxed{{{expression}}}"), numbers, target) == BOTH


def test_corrupted_countdown_answers_score_zero():
    for numbers, target in _problems():
        expression = _solve(numbers, target)
        # the right value but one number used twice and another not at all
        twice = f"{numbers[0]} + {numbers[0]} - {numbers[0]} + ({expression}) - ({expression}) + {target}"
        assert countdown.score(d1_response(f"\\boxed{{{twice}}}"), numbers, target) == NEITHER
        # the right numbers, the wrong value
        off = f"{numbers[0]} + {numbers[1]} + {numbers[2]}"
        if sum(numbers) != target:
            assert countdown.score(d1_response(f"\\boxed{{{off}}}"), numbers, target) == NEITHER
        # one number missing
        partial = f"{numbers[0]} + {numbers[1]}"
        assert countdown.score(d1_response(f"\\boxed{{{partial}}}"), numbers, target) == NEITHER


@pytest.mark.parametrize(
    "response, d1code, semantic",
    [
        ("\\boxed{1 + 2} then \\boxed{30 - 100 + 93}", "30 - 100 + 93", "30 - 100 + 93"),  # the last box wins
        # no box: d1 takes the whole text (tags and all), the semantic reading the <answer> content
        # (here the `expression = number` rule then keeps the expression anyway)
        ("<answer>\n100 - 93 + 30 = 37\n</answer>", "100 - 93 + 30", "100 - 93 + 30"),
        ("<answer>\n100 - 93 + 30", "<answer>\n100 - 93 + 30", "100 - 93 + 30"),  # tag closed by the end
        # a box that never closes: d1 falls back to a closed <answer>
        ("<answer>30 + 7</answer> \\boxed{30 + 7", "30 + 7", "30 + 7"),
        ("so 93 + 30 - 100 = 23", "93 + 30 - 100", "93 + 30 - 100"),  # neither: the whole text, lhs of '='
        ("\\boxed{100 \\div 4 \\times 2 \\cdot 1}", "100 / 4 * 2 * 1", "100 / 4 * 2 * 1"),  # LaTeX operators
        ("<answer>\\boxed{3+4}</answer>\\boxed{5+6}<|eot_id|>", "5+6", "3+4"),  # a box after the tag
    ],
)
def test_countdown_extraction_d1code_and_semantic(response, d1code, semantic):
    assert countdown.d1code_expression(response) == d1code
    assert countdown.semantic_expression(response) == semantic


def test_countdown_value_tolerance_division_and_disallowed_operators():
    assert countdown.is_correct("(30 + 93) / 100", [30, 93, 100], 1.23)
    assert countdown.is_correct("(100 + 30) / 93", [30, 93, 100], 130 / 93 + 1e-6)  # within 1e-5
    assert not countdown.is_correct("(100 + 30) / 93", [30, 93, 100], 130 / 93 + 2e-5)
    assert not countdown.is_correct("100 / (93 - 93) + 30", [30, 93, 100], 0)  # also reuses 93
    assert countdown.evaluate("7 / (3 - 3)") is None
    assert countdown.evaluate("9**9**9") is None  # the semantic rule allows only + - * /
    assert countdown.evaluate("9 // 2") is None
    assert countdown.evaluate("__import__('os')") is None
    assert countdown.evaluate("-(3 - 5) * 2") == 4.0
    assert not countdown.is_correct("3 5 2", [3, 5, 2], 10)


def test_d1code_evaluates_like_pythons_eval_on_d1s_characters():
    # d1 evaluates with `eval`: `**` and `//` count, errors are infinitely far from the target
    assert countdown.d1code_is_correct("2**3 + 1", [2, 3, 1], 9)
    assert countdown.d1code_is_correct("(9 // 2) * 3", [9, 2, 3], 12)
    assert countdown.d1code_is_correct("(-8) ** 0.5 * 0 + 8", [8, 0, 5, 0, 8], 8)  # a complex power: abs() of it
    assert not countdown.d1code_is_correct("7 / (3 - 3)", [7, 3, 3], 0)
    assert not countdown.d1code_is_correct("(3)(4) + 5", [3, 4, 5], 12)  # calling an int: TypeError
    assert not countdown.d1code_is_correct("__import__('os')", [], 0)


def test_d1code_scores_a_runaway_power_as_wrong_within_its_deadline():
    start = time.monotonic()
    assert not countdown.d1code_is_correct("9**9**9", [9, 9, 9], 1, deadline_s=1.0)
    assert time.monotonic() - start < 10
