"""Pivot strings for the built-in MDM `tiny_pivot`: an early low-confidence choice that the rest of
the answer depends on.

Prompt `A<s_a>B<s_b>=` with two `LENGTH`-digit strings that differ in `DIFFS` places (elsewhere equal).
Answer: a letter naming one of them, that string, then the same string reversed (a checksum-like
echo), then EOS: `1 + 2 * LENGTH + 1 = 48` slots. Both answers are correct and equally likely in
training, so the letter and every differing digit (and its echo) are 50/50 on their own but fully
determined once any one of them is written. Slots where the strings agree are certain. An order
that commits two undecided slots in the same step (one pass, each at its own marginal) mixes the
two strings about half of the time; an order that writes one pivot slot first and lets the model
condition on it never does. Confidence-first orders write all the certain slots first and are left
with only undecided slots at the end, several per step.
"""

from __future__ import annotations

import random

from boe_eval.tiny.task import TinyTask

LENGTH = 23
DIFFS = (3, 6)
GEN_LENGTH = 1 + 2 * LENGTH + 1
LETTERS = ("A", "B")


def make_item(rng: random.Random, for_training: bool = False) -> dict:
    """Two digit strings differing at `DIFFS` (inclusive range) random places, and which of them the
    training target writes (drawn 50/50; the test metric accepts either)."""
    a = [str(rng.randrange(10)) for _ in range(LENGTH)]
    b = list(a)
    for i in rng.sample(range(LENGTH), rng.randint(*DIFFS)):
        b[i] = str((int(a[i]) + rng.randrange(1, 10)) % 10)
    return {"a": "".join(a), "b": "".join(b), "choice": rng.choice(LETTERS)}


def option(doc: dict, letter: str) -> str:
    """The answer that names `letter`: the letter, its string, the string reversed."""
    s = doc["a"] if letter == "A" else doc["b"]
    return letter + s + s[::-1]


def prompt(doc: dict) -> str:
    return f"A{doc['a']}B{doc['b']}="


def answer(doc: dict) -> str:
    return option(doc, doc["choice"])


def score(response: str, doc: dict) -> dict[str, float]:
    """`valid`: the response is one of the two answers exactly. `consistent`: fraction of the
    answer's digits that agree with the string the response's letter names (0 if it names none)."""
    text = response.strip()
    letter = text[:1]
    if letter not in LETTERS:
        return {"valid": 0.0, "consistent": 0.0}
    target = option(doc, letter)
    return {
        "valid": float(text == target),
        "consistent": sum(x == y for x, y in zip(text[1:], target[1:])) / (len(target) - 1),
    }


def differing(doc: dict) -> list[int]:
    """Positions (in the string) where the two strings differ."""
    return [i for i, (x, y) in enumerate(zip(doc["a"], doc["b"])) if x != y]


TASK = TinyTask(
    name="tiny_pivot",
    make_item=make_item,
    prompt=prompt,
    answer=answer,
    score=score,
    primary_metric="valid",
    test_seed=20261129,
    validation_seed=17,
    train_seed=9,
    train_overrides={"steps": 2000, "batch_size": 64, "hidden_size": 64, "layers": 3, "heads": 4,
                     "max_positions": 112, "dropout": 0.0, "warmup": 100, "cosine": True},
)
