"""Countdown (3 numbers), d1 protocol: data, prompt and metric (scoring in boe_eval.metrics.countdown)."""

from __future__ import annotations

from boe_eval.harness.task_data import local_dataset
from boe_eval.metrics import countdown

DATA = {"test": "data/countdown_cd3_test.jsonl"}

# d1 eval/countdown.py: CTD_SYSTEM_PROMPT, verbatim (d1 joins "...\boxed{a + b * c}" and
# "Respond in..." without a space or newline).
D1_SYSTEM_PROMPT = (
    "Using only the provided numbers, create an arithmetic expression that evaluates to exactly the provided "
    "target number. You may use the operations +, -, *, and / as needed, but each number must be used exactly "
    "once. Think step-by-step. After reasoning, provide only your final expression inside \\boxed{} tags "
    "without including an equals sign or the target number. For example: \\boxed{a + b * c}"
    "Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n\\boxed{...}\n</answer>"
)


def _typed(records: list[dict]) -> list[dict]:
    """d1 stores `"input": "a,b,c"` and `"output": "target"` as strings; add typed fields."""
    return [
        {**r, "numbers": [int(n) for n in r["input"].split(",")], "target": int(r["output"])}
        for r in records
    ]


def load(**kwargs):
    """All 256 problems (d1 evaluates all of them)."""
    return local_dataset(__file__, DATA, transform=_typed)


def d1_prompt(doc: dict) -> str:
    """User turn of d1: system prompt, blank line, `Numbers: [a, b, c]\\nTarget: t`."""
    return D1_SYSTEM_PROMPT + "\n\n" + f"Numbers: {list(doc['numbers'])}\nTarget: {doc['target']}"


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return countdown.score(results[0], list(doc["numbers"]), doc["target"])
