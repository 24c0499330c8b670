"""tiny_sudoku: data, prompt and metrics (boe_eval.tiny.sudoku)."""

from __future__ import annotations

from boe_eval.harness.task_data import local_dataset
from boe_eval.tiny import sudoku


def load(**kwargs):
    return local_dataset(__file__, {"test": "data/test.jsonl"})


def doc_to_text(doc: dict) -> str:
    return sudoku.prompt(doc["puzzle"])


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return sudoku.score(results[0], doc["puzzle"], doc["solution"])
