"""Dense pivot templates for the built-in MDM `tiny_pivot_dense`: one early 50/50 decision that about
half of the answer depends on.

Two `LENGTH`-digit strings A and B that differ at an odd number (at least `MIN_DIFFS`) of places, each
place differing with probability 1/2; where they differ A has a low digit d (0-4) and B has d + 5. The
prompt writes both as one template, `<t_1 ... t_n>=`: `t_i` is the shared digit where they agree and the
letter `PAIR_LETTERS[d]` (a-e: "A writes d, B writes d + 5") where they differ. Answer: a letter naming
one string, then that string, then EOS: `1 + LENGTH + 1 = 48` slots. Both answers are correct and equally
likely in training, so the letter and every differing digit are 50/50 on their own and fully determined
once any one of them is written; the places where the strings agree are certain.

Decoding (the task config samples tokens at temperature 1, two per step): an order that commits two
undecided slots in the same step draws each from its own 50/50 marginal and mixes the strings half of the
time; an order that commits one undecided slot alone or next to a certain one never does. With k odd there
are 47 - k (even) certain slots, so a confidence-first order writes them all in pairs and then has to
commit two undecided slots together; a random order usually meets the first undecided slot next to a
certain one.

How this format was chosen (probes, 3 layers, hidden 64, batch 64, recorded in the model card):
* `A<s_a>B<s_b>=` with B differing anywhere by any digit (143 tokens a row): 2 s a step on the shared CPU,
  stopped at step 26.
* this template with B = A + 5 (mod 10) at any digit, absolute positions, lr 2e-3: validation loss stuck at
  2.24 (no copy) until step 800, then 0.85 from step 1500 to 2000 (partial copy; stopped).
* the same with relative positions (`relative_key`), lr 1e-3: copies from step 400, then plateaued at
  0.360-0.370 (steps 600-1100), the floor of a model that does not condition one place on another
  (0.347 computed below); stopped.
* A low / B high (this format, then with any number of differing places): 0.0375 at step 500, below the no-conditioning floor from step 400: a written
  undecided digit says by itself which string it comes from (low = A), so conditioning on it is one
  attention read instead of a per-place lookup. Greedy decoding (temperature 0) then writes every undecided
  slot on the same side of its 50/50 tie (confidence 100% valid on 100 items at step 500): hence sampling.

Loss floors (the MDM loss of `boe_eval.tiny.training`, averaged over the 48 slots; k ~ 23 undecided places
+ the letter): a model that conditions no slot on another pays (k + 1) ln 2 / 48 = 0.347; one that
conditions on the letter only pays (1 + k / 2) ln 2 / 48 = 0.180; the task's floor is ln 2 / 48 = 0.0144.
"""

from __future__ import annotations

import random

from boe_eval.tiny.task import TinyTask

LENGTH = 46
MIN_DIFFS = 3
GEN_LENGTH = 1 + LENGTH + 1
LETTERS = ("A", "B")
PAIR_LETTERS = "abcde"  #: template letter of a differing place whose A digit is its index (B: index + 5)


def make_item(rng: random.Random, for_training: bool = False) -> dict:
    """Two digit strings that differ at each place with probability 1/2, A low and B = A + 5 there
    (redrawn until an odd number, at least `MIN_DIFFS`, of places differ), and which of them the training
    target writes (50/50; the test metric accepts either)."""
    while True:
        a, b = [], []
        for _ in range(LENGTH):
            if rng.random() < 0.5:  # shared digit
                a.append(str(rng.randrange(10)))
                b.append(a[-1])
            else:  # A writes a low digit, B that digit + 5
                a.append(str(rng.randrange(5)))
                b.append(str(int(a[-1]) + 5))
        diffs = sum(x != y for x, y in zip(a, b))
        if diffs >= MIN_DIFFS and diffs % 2 == 1:
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
    train_overrides={"steps": 2000, "batch_size": 64, "hidden_size": 64, "layers": 3, "heads": 4,
                     "max_positions": 96, "dropout": 0.0, "warmup": 100, "cosine": True, "lr": 1e-3,
                     "position_embedding_type": "relative_key"},
)
