"""Fast-dLLM parallel decoding (`threshold`, `factor`): parity with a restatement of NVlabs/Fast-dLLM
`llada/generate.py` (`generate` + `get_transfer_index` / `get_transfer_index_dynamic`), hand-computed steps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from boe_eval.decoding.loop import DecodeConfig, generate
from boe_eval.errors import ConfigError
from boe_eval.samplers import build_sampler
from test_samplers_baselines import (PROMPTS, REPO, ScriptedDenoiser, committed_per_step, encode, reference_model, run,
                                     two_point)


def fast_dllm_reference(model, prompt, mask_id, gen_length, block_length, threshold=None, factor=None):
    """Fast-dLLM `generate` at T = 0 for one sequence: per block, loop until the block has no mask; each
    call commits (threshold) the top-1 plus every masked block slot with p(x0) >= threshold, or (factor)
    the first `top_i` of the confidence order, with `top_i` found by the reference's scan over the
    thresholds [-1, 1 - f/3, 1 - f/4, ...] including its `top_i == len - 1` branch."""
    x = torch.full((1, len(prompt) + gen_length), mask_id, dtype=torch.long)
    x[0, : len(prompt)] = torch.tensor(prompt)
    p0, calls = len(prompt), 0
    for b in range(gen_length // block_length):
        lo, hi = p0 + b * block_length, p0 + (b + 1) * block_length
        while (x[0, lo:hi] == mask_id).any():
            logits = model(x)[0]
            calls += 1
            p = F.softmax(logits.double(), dim=-1)
            x0 = p.argmax(-1)
            conf = p.gather(-1, x0[:, None])[:, 0]
            masked = [i for i in range(lo, hi) if x[0, i] == mask_id]
            ranked = sorted(masked, key=lambda i: -float(conf[i]))  # stable: ties to the left
            if threshold is not None:
                chosen = ranked[:1] + [i for i in ranked[1:] if conf[i] >= threshold]
            else:
                threshs = [1 - factor / (n + 1) for n in range(1, len(ranked) + 1)]
                threshs[0] = -1
                for top_i in range(len(threshs)):
                    if conf[ranked[top_i]] < threshs[top_i]:
                        break
                if top_i == 0 or top_i == len(threshs) - 1:
                    top_i += 1
                chosen = ranked[:top_i]
            for i in chosen:
                x[0, i] = x0[i]
    return x[0, p0:].tolist(), calls


@pytest.mark.parametrize("threshold, block_length", [(0.04, 16), (0.06, 8), (0.9, 8), (0.0, 16)])
def test_threshold_matches_reference(tiny_bert, threshold, block_length):
    results = run(tiny_bert, build_sampler("threshold", threshold=threshold), PROMPTS, gen_length=16, steps=16,
                  block_length=block_length)
    for prompt, result in zip(PROMPTS, results):
        tokens, calls = fast_dllm_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id,
                                            16, block_length, threshold=threshold)
        assert result.tokens == tokens and result.nfe == result.forwards == calls


@pytest.mark.parametrize("factor, block_length", [(1.0, 16), (2.9, 8), (3.5, 16), (0.0, 8)])
def test_factor_matches_reference(tiny_bert, factor, block_length):
    results = run(tiny_bert, build_sampler("factor", factor=factor), PROMPTS, gen_length=16, steps=16,
                  block_length=block_length)
    for prompt, result in zip(PROMPTS, results):
        tokens, calls = fast_dllm_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id,
                                            16, block_length, factor=factor)
        assert result.tokens == tokens and result.nfe == result.forwards == calls


def _scripted_run(tiny_bert, sampler, probabilities=(0.7, 0.99, 0.8, 0.95)):
    prompt = encode(tiny_bert, "go")
    script = {i: two_point(tiny_bert, q) for i, q in enumerate(probabilities)}
    model = ScriptedDenoiser(tiny_bert, len(prompt), lambda n: script)
    [result] = generate(model, [prompt], sampler, DecodeConfig(gen_length=len(probabilities), steps=len(probabilities),
                                                               record_trajectory=True))
    return result


@pytest.mark.parametrize("threshold, steps", [
    (0.9, [{1, 3}, {2}, {0}]),          # 0.99, 0.95 pass; then 0.8 and 0.7 go one by one as the top-1
    (0.75, [{1, 3, 2}, {0}]),
    (0.995, [{1}, {3}, {2}, {0}]),      # nothing passes: top-1 per step, confidence order
    (0.5, [{0, 1, 2, 3}]),
])
def test_threshold_on_a_hand_computed_example(tiny_bert, threshold, steps):
    """Slots 0..3 with two-point predictions p = 0.7, 0.99, 0.8, 0.95 at every call."""
    result = _scripted_run(tiny_bert, build_sampler("threshold", threshold=threshold))
    assert committed_per_step(result) == steps and result.nfe == len(steps)


@pytest.mark.parametrize("factor, first", [
    (0.1, {1}),           # j=2: 1 - 0.1/3 = 0.967 > 0.95 fails
    (0.3, {1, 3}),        # j=2: 0.9 passes; j=3: 1 - 0.3/4 = 0.925 > 0.8 fails
    (0.5, {1, 3}),        # j=3: 0.875 > 0.8 fails
    (1.0, {0, 1, 2, 3}),  # j=2: 0.667, j=3: 0.75 pass; j=4: 0.8 > 0.7 fails at the LAST slot: all four (quirk)
    (1.6, {0, 1, 2, 3}),  # j=4: 1 - 1.6/5 = 0.68 <= 0.7: all pass
])
def test_factor_on_a_hand_computed_example(tiny_bert, factor, first):
    result = _scripted_run(tiny_bert, build_sampler("factor", factor=factor))
    assert committed_per_step(result)[0] == first


def test_factor_zero_is_one_slot_per_step_until_the_last_two(tiny_bert):
    """f = 0: every threshold but the first is 1, so (below certainty) one slot per step in confidence order,
    until two slots remain: the scan then fails at the last slot and the reference's branch commits both.
    A block of 8 takes 7 calls, and the first 6 commits are those of top-1 confidence."""
    results = run(tiny_bert, build_sampler("factor", factor=0.0), PROMPTS, gen_length=16, steps=16, block_length=8,
                  record_trajectory=True)
    top1 = run(tiny_bert, build_sampler("confidence"), PROMPTS, gen_length=16, steps=16, block_length=8,
               record_trajectory=True)
    for a, b in zip(results, top1):
        assert a.nfe == 14 and [len(s) for s in committed_per_step(a)] == ([1] * 6 + [2]) * 2
        assert committed_per_step(a)[:6] == committed_per_step(b)[:6]


def test_batch_composition_does_not_change_results(tiny_bert):
    for name, params in (("threshold", {"threshold": 0.05}), ("factor", {"factor": 3.0})):
        together = run(tiny_bert, build_sampler(name, **params), PROMPTS, gen_length=16, steps=8, block_length=8)
        for prompt, batched in zip(PROMPTS, together):
            [alone] = run(tiny_bert, build_sampler(name, **params), [prompt], gen_length=16, steps=8, block_length=8)
            assert alone.tokens == batched.tokens and alone.nfe == batched.nfe


def test_validation():
    for name, bad in (("threshold", {"threshold": 1.5}), ("threshold", {"threshold": -0.1}),
                      ("factor", {"factor": -1.0}), ("factor", {"factor": math.inf})):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))}="):
            build_sampler(name, **bad)


@pytest.mark.parametrize("config_name", ["threshold", "factor"])
def test_hydra_configs_state_the_defaults(config_name):
    text = (REPO / "configs" / "sampler" / f"{config_name}.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["params"] == build_sampler(config["name"]).params()
    for key in config["params"]:
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
        assert "#" in line
    assert "docs/samplers/fast_dllm.md" in text and (REPO / "docs" / "samplers" / "fast_dllm.md").is_file()
