"""Write tasks/tiny_addition_choice/data/test.jsonl: a multiple-choice version of tiny_addition.

The first `N` held-out sums of tasks/tiny_addition/data/test.jsonl (never seen by the built-in model
in training), each with four 11-digit choices: the sum, the sum with every carry dropped (column
digits added mod 10), and the sum plus and minus a power of ten at two different digits. Choice
order is shuffled from a fixed seed, so the file is reproduced byte for byte:

    python scripts/make_tiny_addition_choice.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tasks" / "tiny_addition" / "data" / "test.jsonl"
TARGET = ROOT / "tasks" / "tiny_addition_choice" / "data" / "test.jsonl"
N = 50
SEED = 17


def choices_for(doc: dict, rng: random.Random) -> tuple[list[str], int]:
    """(shuffled choices, index of the right one)."""
    width = len(doc["answer"])
    right = int(doc["answer"])
    no_carry = "0" + "".join(str((int(x) + int(y)) % 10) for x, y in zip(doc["a"], doc["b"]))
    p, q = rng.sample(range(width - 1), 2)
    candidates = [doc["answer"], no_carry, str(right + 10**p).zfill(width), str(max(right - 10**q, 0)).zfill(width)]
    choices = list(dict.fromkeys(c for c in candidates if len(c) == width))
    while len(choices) < 4:  # a sum without carries (or a clipped one) coincided: another digit off
        extra = str(right + 10 ** rng.randrange(width - 1)).zfill(width)
        if extra not in choices and len(extra) == width:
            choices.append(extra)
    rng.shuffle(choices)
    return choices, choices.index(doc["answer"])


def write(target: Path = TARGET) -> int:
    rng = random.Random(SEED)
    docs = [json.loads(line) for line in SOURCE.read_text().splitlines()[:N]]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w") as fh:
        for doc in docs:
            choices, gold = choices_for(doc, rng)
            fh.write(json.dumps({"a": doc["a"], "b": doc["b"], "choices": choices, "gold": gold}) + "\n")
    return len(docs)


def main() -> None:
    print(f"wrote {write()} items to {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
