"""MBPP: data (test split = task_ids 11-510, few-shot = tasks 2, 3, 4), program assembly for both
protocols, pass@1 in the sandbox (boe_eval.sandbox.code_tasks; never HF `code_eval`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import datasets

from boe_eval.harness.task_data import read_records
from boe_eval.sandbox import code_tasks
from boe_eval.sandbox.executor import TestedProgram

DATA = Path(__file__).resolve().parent / "data" / "mbpp.jsonl"
TEST_TASK_IDS = range(11, 511)
FEWSHOT_TASK_IDS = (2, 3, 4)  # MBPP paper, lm-eval `mbpp`: prompts 2, 3, 4


def load(**kwargs):
    """Test split (500 tasks) and the 3 few-shot exemplars, in task_id order."""
    rows = read_records(DATA)
    test = [r for r in rows if r["task_id"] in TEST_TASK_IDS]
    fewshot = sorted((r for r in rows if r["task_id"] in FEWSHOT_TASK_IDS), key=lambda r: r["task_id"])
    return datasets.DatasetDict(
        {"test": datasets.Dataset.from_list(test), "fewshot": datasets.Dataset.from_list(fewshot)}
    )


def program_base(doc: dict, completion: str) -> TestedProgram:
    """Base protocol: the completion up to [DONE], then the task's tests."""
    return code_tasks.mbpp_program(doc, code_tasks.mbpp_completion_code(completion))


def program_d1(doc: dict, response: str) -> TestedProgram:
    """Instruction protocol: the response's code (up to the closing fence), then the tests."""
    return code_tasks.mbpp_program(doc, code_tasks.response_code(response))


run_ahead_base = partial(code_tasks.run_ahead, build_program=program_base)
run_ahead_d1 = partial(code_tasks.run_ahead, build_program=program_d1)


def process_results_base(doc: dict, results: list[str]) -> dict[str, float]:
    return code_tasks.pass_at_1(program_base(doc, results[0]))


def process_results_d1(doc: dict, results: list[str]) -> dict[str, float]:
    return code_tasks.pass_at_1(program_d1(doc, results[0]))
