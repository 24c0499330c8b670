"""Running-sum chains for the built-in MDM `tiny_chain`: a long generation in which every sum is
computable from the slot before it and its own increment, and (for a small model) from little else.

Prompt `<d_1 ... d_n>=` with `LENGTH` random increments `d_k` in {0, 1, 2}; answer the increments
interleaved with their running sums mod 10, `d_1 s_1 d_2 s_2 ... d_n s_n` with
`s_k = (s_{k-1} + d_k) mod 10`, `s_0 = 0`, then EOS: `2 * LENGTH + 2 = 64` slots. The `d_k` slots are
copies of the prompt (certain in any order); `s_k` is a one-step function of the two slots before it
(`s_{k-1}` and `d_k`; read backwards, of `s_{k+1}` and `d_{k+1}`), but reaching it from the prompt
alone means summing k increments. An order that follows the written frontier (left to right, or
confidence, which finds the frontier because only the sum next to a written one is certain) needs one
hop per sum; an order that writes a sum whose neighbours are both still masked must guess (random
order), and committing several slots per step makes every order write sums beyond the frontier.

Why this format (two attempts that did not learn, 3 layers, hidden 64, lr 2e-3, batch 64):
* answer = the 47 sums alone, prompt increments 0-9: `s_k` is independent of `d_k` alone and of
  `s_{k-1}` alone (an XOR-like target); the validation loss stayed at the uniform ln 10 = 2.30 for
  400 steps (2.293 / 2.284 / 2.273 / 2.277 at steps 100-400).
* the same with increments 0-2: the model learned the neighbour (val 1.18 at step 1000, near the
  ln 3 = 1.10 of "one of s_{k-1} + 0, 1, 2") but not where in the prompt `d_k` sits (an offset of 48
  positions with learned absolute positions), so it could not tell the three apart.
Writing `d_k` into the answer next to `s_k` makes the alignment a copy, which this recipe learns
(the pivot model copies 23-digit strings), and leaves the chain itself local.
"""

from __future__ import annotations

import random

from boe_eval.tiny.task import TinyTask

LENGTH = 31
INCREMENTS = "012"
GEN_LENGTH = 2 * LENGTH + 2


def running_sums(digits: str) -> str:
    """`s_k = (s_{k-1} + d_k) mod 10`, `s_0 = 0`, as a digit string of the same length."""
    out, total = [], 0
    for d in digits:
        total = (total + int(d)) % 10
        out.append(str(total))
    return "".join(out)


def make_item(rng: random.Random, for_training: bool = False) -> dict:
    """`LENGTH` uniform random increments (from `INCREMENTS`) and their running sums."""
    digits = "".join(rng.choice(INCREMENTS) for _ in range(LENGTH))
    return {"digits": digits, "sums": running_sums(digits)}


def prompt(doc: dict) -> str:
    return f"{doc['digits']}="


def answer(doc: dict) -> str:
    """`d_1 s_1 d_2 s_2 ... d_n s_n`."""
    return "".join(d + t for d, t in zip(doc["digits"], doc["sums"]))


def score_interleaved(response: str, answer_text: str, states: str, accuracy_name: str) -> dict[str, float]:
    """Metrics of an answer that interleaves given tokens with the states they lead to (this chain, the shell game
    of `boe_eval.tiny.shell`). `exact_match`: the response is the answer exactly. `<accuracy_name>`: share of the
    states (odd-numbered slots) written correctly. `prefix`: share of the states correct before the first wrong one."""
    text = response.strip()
    written = text[1::2]
    correct = [i < len(written) and written[i] == t for i, t in enumerate(states)]
    first_error = correct.index(False) if False in correct else len(states)
    return {
        "exact_match": float(text == answer_text),
        accuracy_name: sum(correct) / len(states),
        "prefix": first_error / len(states),
    }


def score(response: str, doc: dict) -> dict[str, float]:
    """`exact_match`, `sum_accuracy` (share of the `LENGTH` sums right), `prefix` (`score_interleaved`)."""
    return score_interleaved(response, answer(doc), doc["sums"], "sum_accuracy")


TASK = TinyTask(
    name="tiny_chain",
    make_item=make_item,
    prompt=prompt,
    answer=answer,
    score=score,
    primary_metric="exact_match",
    test_seed=20261130,
    validation_seed=23,
    train_seed=11,
    train_overrides={"steps": 2500, "batch_size": 64, "hidden_size": 64, "layers": 3, "heads": 4,
                     "max_positions": 112, "dropout": 0.0, "warmup": 100, "cosine": True, "lr": 2e-3},
)
