"""tiny_word_problems: data, prompt and metrics (boe_eval.tiny.word_problems)."""

from __future__ import annotations

from boe_eval.harness.task_data import local_dataset
from boe_eval.tiny import word_problems


def load(**kwargs):
    return local_dataset(__file__, {"test": "data/test.jsonl"})


def doc_to_text(doc: dict) -> str:
    return word_problems.prompt(doc)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return word_problems.score(results[0], doc)
