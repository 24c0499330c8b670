"""GSM8K: data, the d1 prompt and metrics for both protocols (scoring in boe_eval.metrics.gsm8k)."""

from __future__ import annotations

from boe_eval.harness.task_data import local_dataset
from boe_eval.metrics import gsm8k

DATA = {"test": "data/test.jsonl", "train": "data/train.jsonl"}

# d1 eval/gsm8k.py: GSM_SYSTEM_PROMPT, verbatim (including the space after "\boxed{}.").
D1_SYSTEM_PROMPT = (
    "You are a math expert. You will be given a question to solve. Solve it step by step. "
    "Wrap the final answer in a \\boxed{}. \n"
    "Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n\\boxed{...}\n</answer>"
)


def load(**kwargs):
    """Test split (1319) and train split (7473, few-shot source of the base protocol)."""
    return local_dataset(__file__, DATA)


def d1_prompt(doc: dict) -> str:
    """User turn of d1: system prompt, blank line, question."""
    return D1_SYSTEM_PROMPT + "\n\n" + doc["question"]


def process_results_d1(doc: dict, results: list[str]) -> dict[str, float]:
    return gsm8k.score_d1(results[0], doc["answer"])


def process_results_base(doc: dict, results: list[str]) -> dict[str, float]:
    return gsm8k.score_base(results[0], doc["answer"])
