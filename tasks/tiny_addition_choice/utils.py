"""tiny_addition_choice: data and prompt (choices written by scripts/make_tiny_addition_choice.py)."""

from __future__ import annotations

from boe_eval.harness.task_data import local_dataset
from boe_eval.tiny import addition


def load(**kwargs):
    return local_dataset(__file__, {"test": "data/test.jsonl"})


def doc_to_text(doc: dict) -> str:
    return addition.prompt(doc)
