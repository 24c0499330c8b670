"""Dense pivot templates for the built-in MDM `tiny_pivot_dense`: one early 50/50 decision that about
half of the answer depends on.

Two `LENGTH`-digit strings A and B that differ at each place with probability 1/2 (at least
`MIN_DIFFS` places), B's digit being A's plus 5 (mod 10) where they differ. The prompt is the two
strings written as one template, `<t_1 ... t_n>=`: `t_i` is the shared digit where they agree and the
letter `PAIR_LETTERS[a_i]` (a-j: "A writes a_i, B writes a_i + 5") where they differ. Answer: a letter
naming one string, then that string, then EOS: `1 + LENGTH + 1 = 48` slots. Both answers are correct
and equally likely in training, so the letter and every differing digit are 50/50 on their own and
fully determined once any one of them is written; the places where the strings agree are certain. An
order that commits two undecided slots in the same step (one pass, each at its own marginal) mixes the
two strings about half of the time; an order that commits one undecided slot alone (or next to a
certain one) and lets the model condition on it never does. Confidence-first orders write the certain
slots first and are left with only undecided slots at the end, several per step.

Why dense (the sparse `boe_eval.tiny.pivot` converged to the wrong floor): with k undecided places a
model that copies without conditioning across places pays about (k + 1) ln 2 per answer, one that
conditions pays about ln 2; with k ~ 23 the cross-place conditioning is most of the loss, and there is
no echo to condition on instead. Why one template rather than `A<s_a>B<s_b>=` (the first probe): the
template is half as long (47 prompt tokens instead of 95), so a training step costs about 2/3 as much
on this shared CPU, and answer digit i sits at one fixed offset from its template character.
"""

from __future__ import annotations

import random

from boe_eval.tiny.task import TinyTask

LENGTH = 46
MIN_DIFFS = 2
GEN_LENGTH = 1 + LENGTH + 1
LETTERS = ("A", "B")
PAIR_LETTERS = "abcdefghij"  #: template letter of a differing place whose A digit is its index


def make_item(rng: random.Random, for_training: bool = False) -> dict:
    """Two digit strings that differ at each place with probability 1/2 (redrawn until at least
    `MIN_DIFFS` places differ), and which of them the training target writes (50/50; the test metric
    accepts either)."""
    while True:
        a = [str(rng.randrange(10)) for _ in range(LENGTH)]
        b = [x if rng.random() < 0.5 else str((int(x) + 5) % 10) for x in a]
        if sum(x != y for x, y in zip(a, b)) >= MIN_DIFFS:
            return {"a": "".join(a), "b": "".join(b), "choice": rng.choice(LETTERS)}


def option(doc: dict, letter: str) -> str:
    """The answer that names `letter`: the letter, then its string."""
    return letter + (doc["a"] if letter == "A" else doc["b"])


def prompt(doc: dict) -> str:
    """The template: the shared digit where A and B agree, `PAIR_LETTERS[a_i]` where they differ."""
    return "".join(x if x == y else PAIR_LETTERS[int(x)] for x, y in zip(doc["a"], doc["b"])) + "="


def answer(doc: dict) -> str:
    return option(doc, doc["choice"])


def differing(doc: dict) -> list[int]:
    """Positions (in the string) where the two strings differ."""
    return [i for i, (x, y) in enumerate(zip(doc["a"], doc["b"])) if x != y]


def score(response: str, doc: dict) -> dict[str, float]:
    """`valid`: the response is one of the two answers exactly. `consistent`: share of the differing
    places whose digit agrees with the string the response's letter names (0 if it names none).
    `majority`: share of the differing places won by whichever string wins more of them (1.0 = no
    mixing; 0.5 = an even mix)."""
    text = response.strip()
    letter = text[:1]
    places = differing(doc)
    digits = text[1:]
    from_a = sum(i < len(digits) and digits[i] == doc["a"][i] for i in places)
    from_b = sum(i < len(digits) and digits[i] == doc["b"][i] for i in places)
    majority = max(from_a, from_b) / len(places)
    if letter not in LETTERS:
        return {"valid": 0.0, "consistent": 0.0, "majority": majority}
    named = from_a if letter == "A" else from_b
    return {"valid": float(text == option(doc, letter)), "consistent": named / len(places), "majority": majority}


TASK = TinyTask(
    name="tiny_pivot_dense",
    make_item=make_item,
    prompt=prompt,
    answer=answer,
    score=score,
    primary_metric="valid",
    test_seed=20261201,
    validation_seed=29,
    train_seed=13,
    train_overrides={"steps": 3000, "batch_size": 64, "hidden_size": 64, "layers": 3, "heads": 4,
                     "max_positions": 96, "dropout": 0.0, "warmup": 100, "cosine": True, "lr": 1e-3,
                     "position_embedding_type": "relative_key"},
)
