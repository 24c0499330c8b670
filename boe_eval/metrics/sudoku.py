"""4x4 Sudoku scoring of the d1 protocol, the whole decoded canvas read two ways.

- `cell_accuracy_d1code` = dllm-reasoning/d1 eval/parse_and_get_acc.py::parse_sudoku_answers: the
  answer string is the first non-empty group of d1's regex cascade (below), whitespace removed,
  right-padded with `0` / cut to 16 characters; the score is the fraction of the puzzle's empty
  cells that hold the reference solution's digit. d1's `<answer>` pattern needs a terminator
  (`</answer>`, `<|eot_id|>` or `<|endoftext|>`, which the full decode with special tokens holds), so
  an `<answer>` that is never closed falls through to the later patterns. d1 pools cells over
  puzzles; every puzzle of the d1 test set has 8 empty cells, so the mean over puzzles is the same.
- `*_semantic`: the same cascade on the answer region (up to `</answer>` or the end of the text),
  where the end of the region closes an `<answer>` tag: `cell_accuracy_semantic` as above;
  `solved_rate_semantic`: the answer is exactly 16 digits forming a valid grid (each row, column and
  2x2 box holds 1-4 once) that keeps every given digit, so a correct solution other than the
  reference counts (124 of the 500 puzzles have more than one); `reference_match_semantic`: the
  answer equals the reference solution (PC-Sampler's criterion, here on this extraction).
"""

from __future__ import annotations

import re

from boe_eval.metrics.extraction import answer_region

SIZE = 4
CELLS = SIZE * SIZE

_TERMINATOR = r"<\|eot_id\|>|<\|endoftext\|>"
# d1's cascade, first non-empty group wins
_D1_PATTERNS = [
    re.compile(r"<answer>.*?```\s*([\d\s]+)```", re.DOTALL),
    re.compile(rf"<answer>(.*?)(?:{_TERMINATOR}|</answer>)", re.DOTALL),
    re.compile(rf"</answer>\s*(.*?)(?:{_TERMINATOR}|$)", re.DOTALL),
    re.compile(r".*?(\d{16})\s*</answer>", re.DOTALL),
    re.compile(r"\b(\d{16})\b", re.DOTALL),
]
# the semantic reading: the same cascade, the end of the answer region closing a tag too
_SEMANTIC_PATTERNS = [
    _D1_PATTERNS[0],
    re.compile(rf"<answer>(.*?)(?:{_TERMINATOR}|</answer>|$)", re.DOTALL),
    *_D1_PATTERNS[2:],
]


def _first_match(response: str, patterns: list[re.Pattern]) -> str:
    for pattern in patterns:
        match = pattern.search(response)
        if match and match.group(1).strip():
            return re.sub(r"\s", "", match.group(1).strip())
    return ""


def d1code_grid(response: str) -> str:
    """d1's answer string of the whole decoded text, whitespace removed ('' if none)."""
    return _first_match(response, _D1_PATTERNS)


def extract_grid(response: str) -> str:
    """The semantic answer string: the cascade on the answer region ('' if none)."""
    return _first_match(answer_region(response), _SEMANTIC_PATTERNS)


def empty_cells(puzzle: str) -> list[int]:
    """Indices of the puzzle's empty cells (`0`)."""
    if len(puzzle) != CELLS:
        raise ValueError(f"puzzle {puzzle!r} has {len(puzzle)} characters; a 4x4 puzzle has {CELLS}")
    return [i for i, ch in enumerate(puzzle) if ch == "0"]


def cell_accuracy(grid: str, puzzle: str, solution: str) -> float:
    """d1: fraction of the puzzle's empty cells whose digit in `grid` (padded/cut to 16) is the reference's."""
    empties = empty_cells(puzzle)
    if not grid or not empties:
        return 0.0
    grid = (grid + "0" * CELLS)[:CELLS]
    return sum(grid[i] == solution[i] for i in empties) / len(empties)


def _units() -> list[list[int]]:
    rows = [[r * SIZE + c for c in range(SIZE)] for r in range(SIZE)]
    cols = [[r * SIZE + c for r in range(SIZE)] for c in range(SIZE)]
    boxes = [
        [(br + r) * SIZE + bc + c for r in range(2) for c in range(2)]
        for br in range(0, SIZE, 2)
        for bc in range(0, SIZE, 2)
    ]
    return rows + cols + boxes


UNITS = _units()


def is_solution(grid: str, puzzle: str) -> bool:
    """`grid` is 16 digits 1-4, every row/column/2x2 box holds each digit once, and the givens are kept."""
    if len(grid) != CELLS or any(ch not in "1234" for ch in grid):
        return False
    if any(given != "0" and given != cell for given, cell in zip(puzzle, grid)):
        return False
    return all(sorted(grid[i] for i in unit) == ["1", "2", "3", "4"] for unit in UNITS)


def score(response: str, puzzle: str, solution: str) -> dict[str, float]:
    """`cell_accuracy_d1code` and the semantic `cell_accuracy`, `solved_rate`, `reference_match`."""
    grid = extract_grid(response)
    return {
        "cell_accuracy_d1code": cell_accuracy(d1code_grid(response), puzzle, solution),
        "cell_accuracy_semantic": cell_accuracy(grid, puzzle, solution),
        "solved_rate_semantic": float(is_solution(grid, puzzle)),
        "reference_match_semantic": float(grid == solution),
    }


__all__ = ["UNITS", "cell_accuracy", "d1code_grid", "empty_cells", "extract_grid", "is_solution", "score"]
