"""Prophet early commit: parity with a restatement of `pixeli99/Prophet` `generate_earlyexit.py::generate`
(T = 0, no constraints) and hand-computed exits on a scripted denoiser."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import transformers
import yaml

from boe_eval.decoding.loop import DecodeConfig, generate
from boe_eval.errors import ConfigError
from boe_eval.samplers import build_sampler
from boe_eval.samplers.prophet import ProphetConfig, phase_threshold
from test_samplers_baselines import PROMPTS, REPO, ScriptedDenoiser, committed_per_step, encode, reference_model, run


def uniform_counts(n, steps):
    base, rem = divmod(n, steps)
    return [base + (1 if i < rem else 0) for i in range(steps)]


def prophet_reference(model, prompt, mask_id, gen_length, steps, block_length, thresholds, answer_start=None,
                      answer_length=5):
    """Prophet `generate` for one sequence: LLaDA low-confidence top-k per block with the uniform counts;
    before each step's transfer, the mean top-2 logit gap over the answer positions (all generation slots
    when `answer_start` is None) is compared with the phase threshold of global_step / steps (global_step
    counted from 1); on exit every masked slot takes this step's argmax and generation ends."""
    x = torch.full((1, len(prompt) + gen_length), mask_id, dtype=torch.long)
    x[0, : len(prompt)] = torch.tensor(prompt)
    p0, calls, global_step = len(prompt), 0, 0
    steps_b = steps // (gen_length // block_length)
    answer = range(p0, p0 + gen_length) if answer_start is None else \
        range(p0 + answer_start, min(p0 + gen_length, p0 + answer_start + answer_length))
    for b in range(gen_length // block_length):
        lo, hi = p0 + b * block_length, p0 + (b + 1) * block_length
        counts = uniform_counts(int((x[0, lo:hi] == mask_id).sum()), steps_b)
        for i in range(steps_b):
            global_step += 1
            logits = model(x)[0]
            calls += 1
            x0 = logits.argmax(-1)
            gaps = []
            for pos in answer:
                top2 = torch.topk(logits[pos], 2).values
                gaps.append(float(top2[0] - top2[1]))
            progress = global_step / steps
            limit = thresholds[0] if progress < 0.33 else thresholds[1] if progress < 0.67 else thresholds[2]
            if gaps and sum(gaps) / len(gaps) >= limit:
                masked = x[0] == mask_id
                x[0, masked] = x0[masked]
                return x[0, p0:].tolist(), calls
            p = F.softmax(logits.double(), dim=-1)
            conf = p.gather(-1, x0[:, None])[:, 0]
            conf[hi:] = -math.inf
            conf = torch.where(x[0] == mask_id, conf, torch.tensor(-math.inf, dtype=torch.float64))
            pick = torch.topk(conf, counts[i]).indices
            x[0, pick] = x0[pick]
    return x[0, p0:].tolist(), calls


CASES = [  # thresholds (early, mid, late), answer_start, block_length, steps
    ((math.inf, math.inf, math.inf), None, 8, 16),    # never exits: plain top-k confidence
    ((0.04, 0.0345, 0.034), None, 8, 16),            # exits in the first block for one prompt, the second for others
    ((0.2, 0.05, 0.03), None, 16, 8),
    ((0.06, 0.05, 0.04), 3, 8, 16),
    ((0.0, 0.0, 0.0), None, 8, 8),                    # exits at the first call: one NFE
]


@pytest.mark.parametrize("thresholds, answer_start, block_length, steps", CASES)
def test_prophet_matches_reference(tiny_bert, thresholds, answer_start, block_length, steps):
    params = dict(zip(("early_gap", "mid_gap", "late_gap"), thresholds), answer_start=answer_start)
    results = run(tiny_bert, build_sampler("prophet", **params), PROMPTS, gen_length=16, steps=steps,
                  block_length=block_length)
    calls_seen = []
    for prompt, result in zip(PROMPTS, results):
        tokens, calls = prophet_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id, 16,
                                          steps, block_length, thresholds, answer_start)
        assert result.tokens == tokens and result.nfe == result.forwards == calls
        assert tiny_bert.mask_id not in result.tokens
        calls_seen.append(calls)
    if thresholds[0] == math.inf:
        assert calls_seen == [steps] * 3
    if thresholds[0] == 0.0:
        assert calls_seen == [1] * 3


@pytest.mark.skipif(int(transformers.__version__.split(".")[0]) >= 5,
                    reason="the thresholds are tuned to this random model's top-2 gaps under transformers 4.x's "
                           "initialisation (5.x initialises the same seed differently); the parity cases run on both")
def test_parity_cases_exit_early_and_fill_later_blocks_without_a_call(tiny_bert):
    """The parity cases are not vacuous: with the second case's thresholds (mean gaps of this random model
    are ~0.03) one row exits inside its first block, so the stored proposal fills the second block with no
    model call, and the others exit at the start of the second block."""
    sampler = build_sampler("prophet", early_gap=0.04, mid_gap=0.0345, late_gap=0.034)
    results = run(tiny_bert, sampler, PROMPTS, gen_length=16, steps=16, block_length=8)
    assert any(s is not None and s < 7 for s in sampler.exit_steps), sampler.exit_steps
    for step, result in zip(sampler.exit_steps, results):
        assert step is not None and result.nfe == step + 1 < 16 and tiny_bert.mask_id not in result.tokens


def test_phase_thresholds():
    config = ProphetConfig()
    assert [phase_threshold(t / 100, config) for t in (1, 32, 33, 66, 67, 100)] == [7.5, 7.5, 5.0, 5.0, 2.5, 2.5]


def gap_script(tiny_bert, gaps):
    """Every call: slot i predicts 'a' with logit gap[i] over 'b' (other letters far below)."""
    a, b = [tiny_bert.tokenizer.convert_tokens_to_ids(c) for c in "ab"]

    def script(n):
        out = {}
        for i, g in enumerate(gaps):
            pa = math.exp(g) / (math.exp(g) + 1)
            out[i] = {a: pa, b: 1 - pa}
        return out

    return script


@pytest.mark.parametrize("gaps, params, steps, expected_nfe", [
    # mean gap (1 + 2 + 3 + 6) / 4 = 3.0: below 7.5 and 5.0, reaches 2.5 once t/T >= 0.67, i.e. t = 3 of 4
    ((1.0, 2.0, 3.0, 6.0), {}, 4, 3),
    # answer region = slots 2..3 only: mean (3 + 6) / 2 = 4.5 >= 2.5 at t = 3 as well; with mid 4.5 at t = 2
    ((1.0, 2.0, 3.0, 6.0), {"answer_start": 2, "answer_length": 2, "mid_gap": 4.5}, 4, 2),
    # mean gap 8 >= 7.5 at the first call
    ((8.0, 8.0, 8.0, 8.0), {}, 4, 1),
])
def test_prophet_exit_step_on_a_hand_computed_example(tiny_bert, gaps, params, steps, expected_nfe):
    prompt = encode(tiny_bert, "go")
    model = ScriptedDenoiser(tiny_bert, len(prompt), gap_script(tiny_bert, gaps))
    [result] = generate(model, [prompt], build_sampler("prophet", **params),
                        DecodeConfig(gen_length=4, steps=steps, record_trajectory=True))
    assert result.nfe == expected_nfe == model.calls
    per_step = committed_per_step(result)
    assert all(len(s) == 1 for s in per_step[:-1]) and len(per_step[-1]) == 4 - (expected_nfe - 1)
    a = tiny_bert.tokenizer.convert_tokens_to_ids("a")
    assert result.tokens == [a] * 4


def test_batch_composition_does_not_change_results(tiny_bert):
    params = {"early_gap": 0.04, "mid_gap": 0.0345, "late_gap": 0.034}
    together = run(tiny_bert, build_sampler("prophet", **params), PROMPTS, gen_length=16, steps=16, block_length=8)
    for prompt, batched in zip(PROMPTS, together):
        [alone] = run(tiny_bert, build_sampler("prophet", **params), [prompt], gen_length=16, steps=16, block_length=8)
        assert alone.tokens == batched.tokens and alone.nfe == batched.nfe


def test_validation():
    for bad in ({"early_gap": -1.0}, {"answer_start": -2}, {"answer_length": 0}):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))}="):
            build_sampler("prophet", **bad)


def test_hydra_config_states_the_defaults():
    text = (REPO / "configs" / "sampler" / "prophet.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["params"] == build_sampler(config["name"]).params()
    for key in config["params"]:
        assert "#" in next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
    assert "docs/samplers/prophet.md" in text and (REPO / "docs" / "samplers" / "prophet.md").is_file()
