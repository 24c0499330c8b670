"""The shell game for the built-in MDM `tiny_shell`: track a ball under five cups through 31 shuffles,
a chain whose links a fixed-depth model cannot shortcut.

Prompt `<m_1 ... m_n>=` with `LENGTH` moves `m_k`, each a digit naming one of three fixed shuffles of
the cups `a`-`e` (`MOVES`, even permutations generating the alternating group A5); the ball starts
under `a`. Answer: each move then the cup the ball is under after it, `m_1 c_1 m_2 c_2 ... m_n c_n`,
`c_k = MOVES[m_k][c_{k-1}]`, then EOS: `2 * LENGTH + 2 = 64` slots, the layout of `tiny_chain`.

Why it replaces the running sum of `tiny_chain` as a ground where the order matters at convergence:
a running sum mod 10 is a word problem over an abelian group, which a fixed-depth transformer can
solve in one pass (count the increments; the chain's model did once trained three times longer, in
any order). A5 is the smallest non-solvable group; its word problem is NC1-complete (Barrington 1989),
so no constant-depth transformer computes `c_k` from the prompt alone for all lengths unless TC0 =
NC1, and shallow transformers trained on such chains learn only short hops (Liu et al. 2023,
"Transformers learn shortcuts to automata"; both in docs/references.md). `c_k` is one hop from a
written neighbour (`c_{k-1}` and `m_k`; read backwards, `c_{k+1}` and `m_{k+1}`), so an order that
follows the written frontier needs one hop per cup, and an order that writes a cup far from any
written one must guess.

Probes that chose the format (same recipe as the shipped run unless said: 3 layers, hidden 64, lr 2e-3,
batch 64, absolute positions; validation loss on 512 held-out items; rows not kept):
* ten moves (five 3-cycles, five double swaps, A5): the loss stayed at guessing level (1.95 at step 100,
  1.87 at 2500, 1.835 at 2776; the moves were not even copied yet): stopped.
* the ten transpositions of five cups (S5, "swap cups i and j"): copied the moves from step ~900 (0.70 at
  1100) and then stalled (0.58 at 2100-2600, 0.54 at 3000); at step 3000 confidence and random order both 0% exact (cup
  accuracy 29.5 vs 28.2%, 100 items, 64 steps): the 50-entry move-by-cup table was not learned.
* the shipped format (three moves) with relative positions (`relative_key`, lr 1e-3, as `tiny_pivot_dense`):
  0.82 at step 2000, where the absolute-position run was at 0.26: stopped for the absolute one.
* the shipped format under a 6000-step schedule: validation 0.1075 at 6000, still falling (0.1338 at 5000);
  first 200 test items, greedy: confidence 92.0% exact vs random order 1.0% at 64 steps, 57.0 vs 0.5 at 32,
  1.5 vs 0.0 at 16; BoE 47 and LookUM 20 on 100 items at 64 steps. The shipped model is the same recipe
  under a 12000-step schedule (model card).
"""

from __future__ import annotations

import random

from boe_eval.tiny.chain import score_interleaved
from boe_eval.tiny.task import TinyTask

LENGTH = 31
CUPS = "abcde"
GEN_LENGTH = 2 * LENGTH + 2


def _cycle_permutation(*cycles: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation of range(5) written as disjoint cycles: cup i's content moves to cup perm[i]."""
    perm = list(range(5))
    for cycle in cycles:
        for i, cup in enumerate(cycle):
            perm[cup] = cycle[(i + 1) % len(cycle)]
    return tuple(perm)


#: move digit -> where each cup's content goes: 0 = the 3-cycle a->b->c->a, 1 = the rotation of all five cups
#: a->b->c->d->e->a, 2 = the double swap a<->b, c<->d. All three are even and together generate A5.
MOVES: tuple[tuple[int, ...], ...] = (
    _cycle_permutation((0, 1, 2)),
    _cycle_permutation((0, 1, 2, 3, 4)),
    _cycle_permutation((0, 1), (2, 3)),
)


def ball_positions(moves: str) -> str:
    """`c_k = MOVES[m_k][c_{k-1}]`, `c_0 = a`, as a string of cups of the same length."""
    out, cup = [], 0
    for m in moves:
        cup = MOVES[int(m)][cup]
        out.append(CUPS[cup])
    return "".join(out)


def make_item(rng: random.Random, for_training: bool = False) -> dict:
    """`LENGTH` uniform random moves and the ball's cup after each."""
    moves = "".join(str(rng.randrange(len(MOVES))) for _ in range(LENGTH))
    return {"moves": moves, "cups": ball_positions(moves)}


def prompt(doc: dict) -> str:
    return f"{doc['moves']}="


def answer(doc: dict) -> str:
    """`m_1 c_1 m_2 c_2 ... m_n c_n`."""
    return "".join(m + c for m, c in zip(doc["moves"], doc["cups"]))


def score(response: str, doc: dict) -> dict[str, float]:
    """`exact_match`, `cup_accuracy` (share of the `LENGTH` cups right), `prefix` (share of the cups right before
    the first wrong one): `chain.score_interleaved`."""
    return score_interleaved(response, answer(doc), doc["cups"], "cup_accuracy")


TASK = TinyTask(
    name="tiny_shell",
    make_item=make_item,
    prompt=prompt,
    answer=answer,
    score=score,
    primary_metric="exact_match",
    test_seed=20261129,
    validation_seed=31,
    train_seed=17,
    train_overrides={"steps": 12000, "batch_size": 64, "hidden_size": 64, "layers": 3, "heads": 4,
                     "max_positions": 112, "dropout": 0.0, "warmup": 100, "cosine": True, "lr": 2e-3},
)
