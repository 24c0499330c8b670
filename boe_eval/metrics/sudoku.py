"""4x4 Sudoku scoring (d1 protocol, dllm-reasoning/d1 eval/parse_and_get_acc.py::parse_sudoku_answers).

- `cell_accuracy` (d1's metric): the answer string is found by d1's regex cascade, whitespace
  removed, right-padded with `0` / cut to 16 characters; the score is the fraction of the
  puzzle's empty cells that hold the reference solution's digit. d1 pools cells over puzzles;
  every puzzle of the d1 test set has 8 empty cells, so the mean over puzzles is the same number.
- `solved_rate`: the extracted answer is exactly 16 digits forming a valid grid (each row, column
  and 2x2 box holds 1-4 once) that keeps every given digit. A correct solution other than the
  reference counts (124 of the 500 puzzles have more than one).
- `reference_match`: the extracted answer equals the reference solution (PC-Sampler's metric).
"""

from __future__ import annotations

import re

SIZE = 4
CELLS = SIZE * SIZE

# d1's cascade, first non-empty group wins. d1 matched the raw decode with special tokens; here the
# text ends at EOS and at the `</answer>` stop string, so the end of the text closes a tag too.
_ANSWER_PATTERNS = [
    re.compile(r"<answer>.*?```\s*([\d\s]+)```", re.DOTALL),
    re.compile(r"<answer>(.*?)(?:<\|eot_id\|>|<\|endoftext\|>|</answer>|$)", re.DOTALL),
    re.compile(r"</answer>\s*(.*?)(?:<\|eot_id\|>|<\|endoftext\|>|$)", re.DOTALL),
    re.compile(r".*?(\d{16})\s*</answer>", re.DOTALL),
    re.compile(r"\b(\d{16})\b", re.DOTALL),
]


def extract_grid(response: str) -> str:
    """d1's answer string: the first non-empty match of the cascade with whitespace removed ('' if none)."""
    for pattern in _ANSWER_PATTERNS:
        match = pattern.search(response)
        if match and match.group(1).strip():
            return re.sub(r"\s", "", match.group(1).strip())
    return ""


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
    """`cell_accuracy`, `solved_rate` and `reference_match` of one response."""
    grid = extract_grid(response)
    return {
        "cell_accuracy": cell_accuracy(grid, puzzle, solution),
        "solved_rate": float(is_solution(grid, puzzle)),
        "reference_match": float(grid == solution),
    }


__all__ = ["UNITS", "cell_accuracy", "empty_cells", "extract_grid", "is_solution", "score"]
