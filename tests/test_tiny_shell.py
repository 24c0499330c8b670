"""The built-in shell-game task (boe_eval.tiny.shell): the moves are the shuffles they claim to be and
generate A5, the answers against an independent simulation of the cups, the metric on hand cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from boe_eval.tiny import shell
from boe_eval.tiny.registry import get_tiny_task

REPO = Path(__file__).resolve().parents[1]


def committed() -> list[dict]:
    path = REPO / "tasks" / "tiny_shell" / "data" / "test.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def play(moves: str) -> str:
    """Independent simulation: a list of cup contents, each move's cycles applied by hand."""
    cycles = {0: [(0, 1, 2)], 1: [(0, 1, 2, 3, 4)], 2: [(0, 1), (2, 3)]}
    cups = ["ball", "", "", "", ""]
    out = []
    for m in moves:
        new = list(cups)
        for cycle in cycles[int(m)]:
            for i, cup in enumerate(cycle):  # the content of `cup` goes to the next cup of the cycle
                new[cycle[(i + 1) % len(cycle)]] = cups[cup]
        cups = new
        out.append("abcde"[cups.index("ball")])
    return "".join(out)


def test_moves_are_even_and_generate_the_alternating_group():
    def compose(p, q):  # p after q
        return tuple(p[q[i]] for i in range(5))

    def parity(p):
        return sum(p[i] > p[j] for i in range(5) for j in range(i + 1, 5)) % 2

    assert len(shell.MOVES) == 3 and len(set(shell.MOVES)) == 3
    assert all(sorted(m) == list(range(5)) and parity(m) == 0 and m != tuple(range(5)) for m in shell.MOVES)
    group, frontier = {tuple(range(5))}, [tuple(range(5))]
    while frontier:
        frontier = [h for g in frontier for m in shell.MOVES if (h := compose(m, g)) not in group and not group.add(h)]
    assert len(group) == 60  # |A5| = 5!/2: the smallest non-solvable group


def test_items_are_moves_and_the_balls_cups():
    docs = committed()
    counts = {str(m): 0 for m in range(3)}
    for d in docs:
        assert len(d["moves"]) == len(d["cups"]) == shell.LENGTH == 31
        for m in d["moves"]:
            counts[m] += 1
        assert d["cups"] == play(d["moves"])
        assert shell.prompt(d) == d["moves"] + "="
        a = shell.answer(d)
        assert a[0::2] == d["moves"] and a[1::2] == d["cups"]
        assert len(a) == shell.GEN_LENGTH - 2 == 62
    total = sum(counts.values())
    assert all(0.32 < n / total < 0.35 for n in counts.values())  # uniform over the three moves
    assert shell.ball_positions("0") == "b" and shell.ball_positions("00") == "bc" and shell.ball_positions("000") == "bca"
    assert shell.ball_positions("1") == "b" and shell.ball_positions("11111") == "bcdea" and shell.ball_positions("2") == "b"
    assert shell.ball_positions("12") == "ba" and shell.ball_positions("112") == "bcd" and shell.ball_positions("") == ""


def test_metric_on_hand_cases():
    """The shell's wiring of the shared metric (`chain.score_interleaved`, whose truncation and copy-error cases
    tests/test_tiny_chain.py checks): the answer by hand, the cups as the scored states, `cup_accuracy` by name."""
    doc = {"moves": "0" * 31, "cups": shell.ball_positions("0" * 31)}
    assert doc["cups"][:6] == "bcabca"
    right = "".join(f"0{'bca'[k % 3]}" for k in range(31))
    assert right == shell.answer(doc)
    assert shell.score(right, doc) == {"exact_match": 1.0, "cup_accuracy": 1.0, "prefix": 1.0}
    # cup number 10 (slot 21) wrong: 30 of 31 cups right, the first 10 before the error
    wrong = right[:21] + ("a" if right[21] != "a" else "b") + right[22:]
    assert shell.score(wrong, doc) == {"exact_match": 0.0, "cup_accuracy": pytest.approx(30 / 31),
                                       "prefix": pytest.approx(10 / 31)}


def test_layout_is_the_task_configs():
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "configs" / "task" / "tiny_shell.yaml")
    task = get_tiny_task("tiny_shell")
    assert task.gen_length == cfg.gen_length == shell.GEN_LENGTH == 64
    assert task.steps == cfg.steps and task.layout().block_length == cfg.block_length
    # the committed controls sweep runs at the default layout (the model card's table at the default comes from it)
    controls = OmegaConf.load(REPO / "configs" / "sweep" / "tiny_shell_controls.yaml")
    assert controls.sweep.budget_axis == "steps" and task.steps in controls.sweep.budgets
