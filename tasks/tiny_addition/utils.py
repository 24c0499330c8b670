"""tiny_addition: data, prompt and metrics (boe_eval.tiny.addition)."""

from __future__ import annotations

from boe_eval.harness.task_data import local_dataset
from boe_eval.tiny import addition


def load(**kwargs):
    return local_dataset(__file__, {"test": "data/test.jsonl"})


def doc_to_text(doc: dict) -> str:
    return addition.prompt(doc)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return addition.score(results[0], doc)
