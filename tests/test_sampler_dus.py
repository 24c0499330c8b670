"""DUS (dilated unmasking scheduler): parity with a restatement of `omerlux/DUS`
`generate.py::generate_scheduled(scheduler="dilated")`, hand-computed groups and deferral."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from boe_eval.decoding.loop import DecodeConfig, generate
from boe_eval.errors import ConfigError
from boe_eval.samplers import build_sampler
from boe_eval.samplers.dus import dilated_groups
from test_samplers_baselines import PROMPTS, REPO, ScriptedDenoiser, committed_per_step, encode, reference_model, run, \
    two_point


def reference_levels(start, end, base, skip_exp):
    """`dilated_unmask_levels(start, end, base, skip_exp)` followed by `merge_last_level`, written out."""
    if base == 1:
        return [list(range(start, end + 1))]
    stride = (end - start + 1) // (base ** skip_exp)
    levels, revealed = [], set()
    while stride >= 1:
        this_round = [i for i in range(start, end + 1) if (i - start) % stride == 0 and i not in revealed]
        if this_round:
            levels.append(this_round)
            revealed.update(this_round)
        stride //= base
    remainder = [i for i in range(start, end + 1) if i not in revealed]
    if remainder:
        levels.append(remainder)
    if len(levels) >= 2 and len(levels[-1]) < len(levels[-2]):
        levels[-2].extend(levels[-1])
        levels.pop()
    return levels


def dus_reference(model, prompt, mask_id, gen_length, block_length, base, base_skip, threshold):
    """`generate_scheduled` at T = 0, remasking="low_confidence": per block and group, one call; write the
    group's still-masked slots with the argmax, then (except at the block's last group) remask the group's
    slots whose confidence is below `threshold`."""
    x = torch.full((1, len(prompt) + gen_length), mask_id, dtype=torch.long)
    x[0, : len(prompt)] = torch.tensor(prompt)
    p0, calls = len(prompt), 0
    for b in range(gen_length // block_length):
        lo = p0 + b * block_length
        schedule = reference_levels(lo, lo + block_length - 1, base, base_skip)
        for step, group in enumerate(schedule):
            if not (x == mask_id).any():
                break
            logits = model(x)[0]
            calls += 1
            x0 = logits.argmax(-1)
            for pos in group:
                if x[0, pos] == mask_id:
                    x[0, pos] = x0[pos]
            if step < len(schedule) - 1:
                conf = F.softmax(logits.double(), dim=-1).gather(-1, x0[:, None])[:, 0]
                for pos in group:
                    if conf[pos] < threshold:
                        x[0, pos] = mask_id
    return x[0, p0:].tolist(), calls


@pytest.mark.parametrize("length, base, skip, expected", [
    (32, 2, 1, [[0, 16], [8, 24], [4, 12, 20, 28], list(range(2, 32, 4)), list(range(1, 32, 2))]),
    (12, 2, 1, [[0, 6], [3, 9], [1, 2, 4, 5, 7, 8, 10, 11]]),
    (12, 3, 1, [[0, 4, 8], [1, 2, 3, 5, 6, 7, 9, 10, 11]]),
    (32, 4, 1, [[0, 8, 16, 24], list(range(2, 32, 4)) + list(range(4, 32, 8)), list(range(1, 32, 2))]),
    (5, 2, 1, [[0, 2, 4, 1, 3]]),          # stride 2 then 1: the last group (2 slots) < the first (3): merged
    (16, 2, 2, [[0, 4, 8, 12], [2, 6, 10, 14], list(range(1, 16, 2))]),
    (8, 1, 1, [list(range(8))]),
])
def test_dilated_groups_by_hand(length, base, skip, expected):
    groups = dilated_groups(length, base, skip)
    assert [sorted(g) for g in groups] == [sorted(g) for g in expected]
    assert groups == reference_levels(0, length - 1, base, skip)


@pytest.mark.parametrize("base, block_length, skip", [(2, 16, 1), (2, 8, 1), (3, 16, 1), (4, 16, 1), (2, 16, 2)])
def test_dus_matches_reference_without_remasking(tiny_bert, base, block_length, skip):
    sampler = build_sampler("dus", base=base, base_skip=skip, confidence_threshold=0.0)
    results = run(tiny_bert, sampler, PROMPTS, gen_length=16, steps=16, block_length=block_length)
    for prompt, result in zip(PROMPTS, results):
        tokens, calls = dus_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id, 16,
                                      block_length, base, skip, 0.0)
        assert result.tokens == tokens and result.nfe == result.forwards == calls
        assert calls == (16 // block_length) * len(dilated_groups(block_length, base, skip))


def test_dus_matches_reference_when_no_slot_falls_below_the_threshold(tiny_bert):
    """Confidences of this random model are above 0.004 everywhere: a threshold below that defers nothing."""
    sampler = build_sampler("dus", confidence_threshold=0.004)
    results = run(tiny_bert, sampler, PROMPTS, gen_length=16, steps=16, block_length=8)
    for prompt, result in zip(PROMPTS, results):
        tokens, calls = dus_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id, 16, 8,
                                      2, 1, 0.004)
        assert result.tokens == tokens and result.nfe == calls and tiny_bert.mask_id not in tokens


def spread(tiny_bert, top=0.28):
    """x0 = 'a' with probability `top`, the rest spread over 'b', 'c', 'd'."""
    a, b, c, d = [tiny_bert.tokenizer.convert_tokens_to_ids(ch) for ch in "abcd"]
    rest = (1 - top) / 3
    return {a: top, b: rest, c: rest, d: rest}


def test_low_confidence_slots_are_deferred_to_the_next_group(tiny_bert):
    """Block of 8, a = 2: groups {0, 4}, {2, 6}, {1, 3, 5, 7}. Slot 4 always has p(x0) = 0.28 < 0.3, the
    others 0.9: step 1 keeps {0}, step 2 keeps {2, 6} (slot 4 still below), the last step writes the rest
    regardless of confidence. (The reference would leave slot 4 masked for good: see docs/samplers/dus.md.)"""
    prompt = encode(tiny_bert, "go")
    script = {i: spread(tiny_bert) if i == 4 else two_point(tiny_bert, 0.9) for i in range(8)}
    model = ScriptedDenoiser(tiny_bert, len(prompt), lambda n: script)
    [result] = generate(model, [prompt], build_sampler("dus"), DecodeConfig(gen_length=8, steps=8,
                                                                            record_trajectory=True))
    assert committed_per_step(result) == [{0}, {2, 6}, {1, 3, 4, 5, 7}] and result.nfe == 3
    [everything] = generate(ScriptedDenoiser(tiny_bert, len(prompt), lambda n: script),
                            [prompt], build_sampler("dus", confidence_threshold=0.0),
                            DecodeConfig(gen_length=8, steps=8, record_trajectory=True))
    assert committed_per_step(everything) == [{0, 4}, {2, 6}, {1, 3, 5, 7}]


def test_a_step_may_keep_no_slot(tiny_bert):
    """Every slot below the threshold: the first two steps keep nothing (no stall error), the last writes all."""
    prompt = encode(tiny_bert, "go")
    script = {i: spread(tiny_bert) for i in range(8)}
    model = ScriptedDenoiser(tiny_bert, len(prompt), lambda n: script)
    [result] = generate(model, [prompt], build_sampler("dus"), DecodeConfig(gen_length=8, steps=8,
                                                                            record_trajectory=True))
    assert committed_per_step(result) == [set(), set(), set(range(8))] and result.nfe == 3


def test_batch_composition_does_not_change_results(tiny_bert):
    together = run(tiny_bert, build_sampler("dus", confidence_threshold=0.05), PROMPTS, gen_length=16, steps=16,
                   block_length=8)
    for prompt, batched in zip(PROMPTS, together):
        [alone] = run(tiny_bert, build_sampler("dus", confidence_threshold=0.05), [prompt], gen_length=16, steps=16,
                      block_length=8)
        assert alone.tokens == batched.tokens and alone.nfe == batched.nfe


def test_validation():
    for bad in ({"base": 0}, {"base_skip": 0}, {"confidence_threshold": 1.5}, {"confidence_threshold": math.nan}):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))}="):
            build_sampler("dus", **bad)


def test_hydra_config_states_the_defaults():
    text = (REPO / "configs" / "sampler" / "dus.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["params"] == build_sampler(config["name"]).params()
    for key in config["params"]:
        assert "#" in next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
    assert "docs/samplers/dus.md" in text and (REPO / "docs" / "samplers" / "dus.md").is_file()
