"""tiny_pivot_dense: data, prompt and metrics (boe_eval.tiny.pivot_dense)."""

from __future__ import annotations

from boe_eval.harness.task_data import local_dataset
from boe_eval.tiny import pivot_dense


def load(**kwargs):
    return local_dataset(__file__, {"test": "data/test.jsonl"})


def doc_to_text(doc: dict) -> str:
    return pivot_dense.prompt(doc)


def doc_to_target(doc: dict) -> str:
    return pivot_dense.answer(doc)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return pivot_dense.score(results[0], doc)
