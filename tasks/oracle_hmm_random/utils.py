"""oracle_hmm_random: data, prompt and exact metrics (boe_eval.oracles)."""

from __future__ import annotations

import functools

from boe_eval.harness.task_data import local_dataset
from boe_eval.oracles import ORACLE_DIR
from boe_eval.oracles.base import SEPARATOR, score_response
from boe_eval.oracles.load import load_oracle


@functools.lru_cache(maxsize=1)
def oracle():
    return load_oracle(ORACLE_DIR / "hmm_random")


def load(**kwargs):
    return local_dataset(__file__, {"test": "data/test.jsonl"})


def doc_to_text(doc: dict) -> str:
    return doc["template"] + SEPARATOR


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return score_response(oracle(), doc["template"], results[0])
