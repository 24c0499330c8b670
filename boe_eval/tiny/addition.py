"""Carry addition for the built-in MDM `tiny_addition`, where left-to-right order is the wrong order.

Prompt `A+B=` with two `DIGITS`-digit operands (leading zeros kept), answer the sum written
most-significant digit first and zero-padded to `DIGITS + 1` digits, then EOS. The digit in column
i is (a_i + b_i + c_i) mod 10, and the carry c_i depends on every lower column up to the first one
whose digits do not sum to 9. Read right to left each digit is local: once the digit below is
written, c_i follows from it and the column below. An easy-first order can find that order (the
last digit, and any digit whose lower column does not sum to 9, are certain); left-to-right and
random orders must predict long carry chains in one pass. Columns that sum to 9 (carry
propagators) are drawn with probability `PROPAGATE_PROB` instead of 1/10, so long chains are common.
The default decoding writes two tokens per step (steps = gen_length / 2, the d1 protocol), so even
an easy-first order must sometimes commit to a digit whose carry is not yet written.
"""

from __future__ import annotations

import random

from boe_eval.tiny.task import TinyTask

DIGITS = 10
PROPAGATE_PROB = 0.5
ANSWER_LENGTH = DIGITS + 1


def make_operands(rng: random.Random, digits: int = DIGITS, propagate_prob: float = PROPAGATE_PROB) -> tuple[str, str]:
    """Two `digits`-digit operands (as strings); each column sums to 9 with probability
    `propagate_prob`, otherwise its two digits are uniform and independent."""
    a, b = [], []
    for _ in range(digits):
        if rng.random() < propagate_prob:
            x = rng.randrange(10)
            y = 9 - x
        else:
            x, y = rng.randrange(10), rng.randrange(10)
        a.append(str(x))
        b.append(str(y))
    return "".join(a), "".join(b)


def make_item(rng: random.Random, for_training: bool = False) -> dict:
    a, b = make_operands(rng)
    return {"a": a, "b": b, "answer": total(a, b)}


def total(a: str, b: str) -> str:
    """a + b zero-padded to one digit more than the operands."""
    return str(int(a) + int(b)).zfill(len(a) + 1)


def prompt(doc: dict) -> str:
    return f"{doc['a']}+{doc['b']}="


def answer(doc: dict) -> str:
    return doc["answer"]


def carry_chain_length(a: str, b: str) -> int:
    """Longest run of columns summing to 9 (how far a carry must travel in one pass)."""
    best = run = 0
    for x, y in zip(a, b):
        run = run + 1 if int(x) + int(y) == 9 else 0
        best = max(best, run)
    return best


def score(response: str, doc: dict) -> dict[str, float]:
    """`exact_match`: the response is the zero-padded sum; `digit_accuracy`: fraction of the
    answer's digits that are right (position by position, missing digits count as wrong)."""
    text = response.strip()
    gold = doc["answer"]
    return {
        "exact_match": float(text == gold),
        "digit_accuracy": sum(x == y for x, y in zip(text, gold)) / len(gold),
    }


TASK = TinyTask(
    name="tiny_addition",
    make_item=make_item,
    prompt=prompt,
    answer=answer,
    score=score,
    primary_metric="exact_match",
    test_seed=20261123,
    validation_seed=11,
    train_seed=3,
    # half of a 2000-step cosine schedule: at 2000 steps every order solves (nearly) everything
    # (model card), so the shipped model stops where the order still decides the outcome
    train_overrides={"steps": 1000, "schedule_steps": 2000, "dropout": 0.0, "warmup": 100, "cosine": True},
)
