"""The lm-eval task functions of an oracle task (`tasks/oracle_<name>/utils.py`): its generated data, the prompt
(the template, then the separator) and the oracle-only metrics of `boe_eval.oracles.base.score_response`."""

from __future__ import annotations

import functools
from pathlib import Path

from boe_eval.harness.task_data import local_dataset
from boe_eval.oracles import ORACLE_DIR
from boe_eval.oracles.base import SEPARATOR, OracleDenoiser, score_response
from boe_eval.oracles.load import load_oracle


class OracleTask:
    """`load`, `doc_to_text` and `process_results` for the oracle `name`, with data beside `utils_file`."""

    def __init__(self, name: str, utils_file: str) -> None:
        self.name, self.utils_file = name, utils_file

    @functools.cached_property
    def oracle(self) -> OracleDenoiser:
        return load_oracle(Path(ORACLE_DIR) / self.name)

    def load(self, **kwargs):
        return local_dataset(self.utils_file, {"test": "data/test.jsonl"})

    def doc_to_text(self, doc: dict) -> str:
        return doc["template"] + SEPARATOR

    def process_results(self, doc: dict, results: list[str]) -> dict[str, float]:
        return score_response(self.oracle, doc["template"], results[0])


__all__ = ["OracleTask"]
