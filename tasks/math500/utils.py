"""MATH500: data, prompts and metrics for both protocols (scoring in boe_eval.metrics.math500)."""

from __future__ import annotations

from boe_eval.harness.task_data import local_dataset, read_records
from boe_eval.metrics import math500

DATA = {"test": "data/test.jsonl"}
MINERVA_FEWSHOT = "data/minerva_fewshot.jsonl"

# d1 eval/math500.py: MATH500_SYSTEM_PROMPT, verbatim. d1's string really ends with `</answer>" `
# and a newline (a stray quote in its source); it is kept so that prompts match d1 token for token.
D1_SYSTEM_PROMPT = (
    "You are a math expert. You will be given a question to solve. Solve it step by step. "
    "Wrap the final answer in a \\boxed{}.\n"
    "Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n\\boxed{...}\n"
    '</answer>" \n'
)


def load(**kwargs):
    """The 500 problems of MATH500 (HuggingFaceH4/MATH-500 = prm800k's math_splits/test.jsonl)."""
    return local_dataset(__file__, DATA)


def minerva_fewshot_samples() -> list[dict]:
    """The 4 fixed Minerva exemplars (Lewkowycz et al. 2022, App. D; as in lm-eval minerva_math)."""
    from pathlib import Path

    return read_records(Path(__file__).resolve().parent / MINERVA_FEWSHOT)


def d1_prompt(doc: dict) -> str:
    """User turn of d1: system prompt, blank line, problem."""
    return D1_SYSTEM_PROMPT + "\n\n" + doc["problem"]


def minerva_prompt(doc: dict) -> str:
    """Minerva's prompt (lm-eval minerva_math doc_to_text)."""
    return "Problem:\n" + doc["problem"] + "\n\nSolution:"


def process_results_d1(doc: dict, results: list[str]) -> dict[str, float]:
    return math500.score_d1(results[0], doc["answer"])


def process_results_base(doc: dict, results: list[str]) -> dict[str, float]:
    return math500.score_minerva(results[0], doc["answer"])
