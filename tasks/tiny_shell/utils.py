"""tiny_shell: data, prompt and metrics (boe_eval.tiny.shell)."""

from __future__ import annotations

from boe_eval.harness.task_data import local_dataset
from boe_eval.tiny import shell


def load(**kwargs):
    return local_dataset(__file__, {"test": "data/test.jsonl"})


def doc_to_text(doc: dict) -> str:
    return shell.prompt(doc)


def doc_to_target(doc: dict) -> str:
    return shell.answer(doc)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return shell.score(results[0], doc)
