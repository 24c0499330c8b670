"""The built-in running-sum chain task (boe_eval.tiny.chain): generator, held-out split, the answer
against an independent computation, the metric on hand cases, and the task config's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from boe_eval.tiny import chain
from boe_eval.tiny.registry import get_tiny_task

REPO = Path(__file__).resolve().parents[1]


def committed() -> list[dict]:
    path = REPO / "tasks" / "tiny_chain" / "data" / "test.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_items_are_increments_and_their_running_sums():
    docs = committed()
    counts = {c: 0 for c in "012"}
    for d in docs:
        assert len(d["digits"]) == len(d["sums"]) == chain.LENGTH == 31
        assert set(d["digits"]) <= set(chain.INCREMENTS)
        for c in d["digits"]:
            counts[c] += 1
        # independent: the prefix sum of the first k increments, mod 10
        assert d["sums"] == "".join(str(sum(map(int, d["digits"][: k + 1])) % 10) for k in range(31))
        assert chain.prompt(d) == d["digits"] + "="
        # the answer interleaves each increment with its sum: d_1 s_1 d_2 s_2 ...
        a = chain.answer(d)
        assert a[0::2] == d["digits"] and a[1::2] == d["sums"]
        assert len(a) == chain.GEN_LENGTH - 2 == 62
    total = sum(counts.values())
    assert all(0.32 < n / total < 0.35 for n in counts.values())  # uniform over 0, 1, 2
    assert chain.running_sums("9") == "9" and chain.running_sums("55") == "50" and chain.running_sums("") == ""


def test_metric_on_hand_cases():
    doc = {"digits": "2" * 31, "sums": chain.running_sums("2" * 31)}
    assert doc["sums"][:6] == "246802"
    right = "22" + "24" + "26" + "28" + "20" + "22" + "".join(f"2{(2 * k) % 10}" for k in range(7, 32))
    assert right == chain.answer(doc)
    assert chain.score(right, doc) == {"exact_match": 1.0, "sum_accuracy": 1.0, "prefix": 1.0}
    assert chain.score(right + "\n", doc)["exact_match"] == 1.0
    # sum number 10 (slot 21) wrong: 30 of 31 sums right, the first 10 before the error
    wrong = right[:21] + ("0" if right[21] != "0" else "1") + right[22:]
    assert chain.score(wrong, doc) == {"exact_match": 0.0, "sum_accuracy": pytest.approx(30 / 31),
                                       "prefix": pytest.approx(10 / 31)}
    # a wrong increment slot fails exact_match but no sum
    copy_error = "0" + right[1:]
    assert chain.score(copy_error, doc) == {"exact_match": 0.0, "sum_accuracy": 1.0, "prefix": 1.0}
    # a truncated answer: the missing sums count as wrong
    assert chain.score(right[:40], doc) == {"exact_match": 0.0, "sum_accuracy": pytest.approx(20 / 31),
                                            "prefix": pytest.approx(20 / 31)}
    assert chain.score("", doc) == {"exact_match": 0.0, "sum_accuracy": 0.0, "prefix": 0.0}


def test_layout_is_the_task_configs():
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "configs" / "task" / "tiny_chain.yaml")
    task = get_tiny_task("tiny_chain")
    assert task.gen_length == cfg.gen_length == chain.GEN_LENGTH == 64
    assert task.steps == cfg.steps and task.layout().block_length == cfg.block_length
    lm = (REPO / "tasks" / "tiny_chain" / "tiny_chain.yaml").read_text()
    assert "max_gen_toks: 64" in lm
