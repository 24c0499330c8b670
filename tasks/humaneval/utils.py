"""HumanEval: data, program assembly for both protocols, pass@1 in the sandbox
(boe_eval.sandbox.code_tasks; never HF `evaluate.load("code_eval")`, which needs the network)."""

from __future__ import annotations

from functools import partial

from boe_eval.harness.task_data import local_dataset
from boe_eval.sandbox import code_tasks
from boe_eval.sandbox.executor import TestedProgram

DATA = {"test": "data/HumanEval.jsonl.gz"}


def load(**kwargs):
    """The 164 problems."""
    return local_dataset(__file__, DATA)


def program_base(doc: dict, completion: str) -> TestedProgram:
    """Base protocol: prompt + completion (cut at lm-eval's stop strings) + tests."""
    return code_tasks.humaneval_program(doc, completion)


def program_d1(doc: dict, response: str) -> TestedProgram:
    """Instruction protocol: prompt, then the response's code (whole function or body), then tests."""
    return code_tasks.humaneval_response_program(doc, response)


run_ahead_base = partial(code_tasks.run_ahead, build_program=program_base)
run_ahead_d1 = partial(code_tasks.run_ahead, build_program=program_d1)


def process_results_base(doc: dict, results: list[str]) -> dict[str, float]:
    return code_tasks.pass_at_1(program_base(doc, results[0]))


def process_results_d1(doc: dict, results: list[str]) -> dict[str, float]:
    return code_tasks.pass_at_1(program_d1(doc, results[0]))
