"""The built-in pivot task (boe_eval.tiny.pivot): generator, held-out split, metric on hand cases, and
the resumable training loop (a run split in two chunks ends bit-exactly where one run ends)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from boe_eval.tiny import pivot
from boe_eval.tiny.registry import get_tiny_task
from boe_eval.tiny.training import STATE_FILE, TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


def committed() -> list[dict]:
    path = REPO / "tasks" / "tiny_pivot" / "data" / "test.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_items_are_two_strings_differing_in_three_to_six_places():
    docs = committed()
    counts = set()
    for d in docs:
        assert len(d["a"]) == len(d["b"]) == pivot.LENGTH and d["choice"] in ("A", "B")
        diffs = [i for i in range(pivot.LENGTH) if d["a"][i] != d["b"][i]]
        assert pivot.DIFFS[0] <= len(diffs) <= pivot.DIFFS[1] and diffs == pivot.differing(d)
        counts.add(len(diffs))
        assert pivot.prompt(d) == f"A{d['a']}B{d['b']}="
        # the training target: letter + string + reversed string fills the 48 slots but the final EOS
        s = d["a"] if d["choice"] == "A" else d["b"]
        assert pivot.answer(d) == d["choice"] + s + "".join(reversed(s))
        assert len(pivot.answer(d)) == pivot.GEN_LENGTH - 1 == 47
    assert counts == set(range(pivot.DIFFS[0], pivot.DIFFS[1] + 1))
    # both answers are targets about equally often
    share = sum(d["choice"] == "A" for d in docs) / len(docs)
    assert 0.45 < share < 0.55


def test_generator_is_deterministic_and_the_test_set_is_held_out():
    task = get_tiny_task("pivot")
    docs = committed()
    assert docs == task.test_set() == task.make_split(task.test_seed, task.test_size)
    prompts = {task.prompt(d) for d in docs}
    assert len(prompts) == len(docs) == 1000
    validation = task.validation_set(docs)
    assert not prompts & {task.prompt(d) for d in validation}
    drawn = list(itertools.islice(task.training_stream(task.train_seed, exclude=prompts), 2000))
    assert drawn == list(itertools.islice(task.training_stream(task.train_seed, exclude=prompts), 2000))
    assert not prompts & {p for p, _ in drawn}


def test_metric_on_hand_cases():
    doc = {"a": "01234567890123456789012", "b": "01234567890123456789019", "choice": "A"}
    a_answer = "A01234567890123456789012" + "21098765432109876543210"
    b_answer = "B01234567890123456789019" + "91098765432109876543210"
    assert pivot.score(a_answer, doc) == {"valid": 1.0, "consistent": 1.0}
    assert pivot.score(b_answer + "\n", doc) == {"valid": 1.0, "consistent": 1.0}  # either answer counts
    # the letter names B but the digits are A's: 2 of the 46 digits disagree with B
    mixed = "B" + a_answer[1:]
    assert pivot.score(mixed, doc) == {"valid": 0.0, "consistent": pytest.approx(44 / 46)}
    # A's string with B's echo: the mix of the two answers a one-pass commit produces
    half = a_answer[:24] + b_answer[24:]
    assert pivot.score(half, doc) == {"valid": 0.0, "consistent": pytest.approx(45 / 46)}
    assert pivot.score("C" + a_answer[1:], doc) == {"valid": 0.0, "consistent": 0.0}
    assert pivot.score("", doc) == {"valid": 0.0, "consistent": 0.0}
    assert pivot.score(a_answer[:-1], doc)["valid"] == 0.0


def _tiny_config(**kw) -> TrainConfig:
    return replace(TrainConfig(), steps=6, batch_size=4, hidden_size=16, layers=1, heads=2, max_positions=112,
                   eval_every=2, dropout=0.1, warmup=2, cosine=True, **kw)


def test_training_resumes_bit_exactly(tmp_path):
    """Steps 1-6 in one run vs steps 1-4, stop, resume to 6 (a fresh stream of the same seed): the same
    weights, optimiser state and history (dropout on, so the torch generator is resumed too)."""
    task = get_tiny_task("pivot")
    validation = [(task.prompt(d), task.answer(d)) for d in task.make_split(5, 8)]
    config = _tiny_config()
    whole = train(task.training_stream(0, set()), validation, config, tmp_path / "whole", gen_length=48)
    train(task.training_stream(0, set()), validation, config, tmp_path / "chunks", gen_length=48, stop_at=4)
    first = torch.load(tmp_path / "chunks" / STATE_FILE, weights_only=False)
    assert first["step"] == 4
    resumed = train(task.training_stream(0, set()), validation, config, tmp_path / "chunks", gen_length=48,
                    resume=True)
    a = torch.load(tmp_path / "whole" / STATE_FILE, weights_only=False)
    b = torch.load(tmp_path / "chunks" / STATE_FILE, weights_only=False)
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimiser"]["state"].values(), b["optimiser"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [(h["step"], h["loss"], h["val_loss"]) for h in whole["history"]] == \
        [(h["step"], h["loss"], h["val_loss"]) for h in resumed["history"]]
    with pytest.raises(ValueError, match="stop_at=3 is invalid"):
        train(task.training_stream(0, set()), validation, config, tmp_path / "bad", gen_length=48, stop_at=3)
    with pytest.raises(FileNotFoundError, match="no training state"):
        train(task.training_stream(0, set()), validation, config, tmp_path / "none", gen_length=48, resume=True)
    # and a run that did not resume from the state differs (the check can fail)
    other = train(task.training_stream(1, set()), validation, config, tmp_path / "other", gen_length=48)
    assert other["history"][-1]["loss"] != whole["history"][-1]["loss"]
