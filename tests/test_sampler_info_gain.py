"""Info-Gain sampler: parity with a restatement of `yks23/Information-Gain-Sampler`
`dllm/dllm/pipelines/info_gain/llada/sampler.py` (no KV cache, T = 0) and hand-computed scores."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from boe_eval.decoding.loop import DecodeConfig, generate
from boe_eval.errors import ConfigError
from boe_eval.samplers import build_sampler
from boe_eval.samplers.info_gain import linear_schedule
from test_samplers_baselines import PROMPTS, REPO, ScriptedDenoiser, committed_per_step, encode, reference_model, run


def dllm_linear_counts(n, steps):
    """dllm `get_num_transfer_tokens` (linear alpha, deterministic): 1 - reverse_mask_prob(s, t) = 1 - s/t."""
    counts, left = [], n
    for t, s in zip(range(steps, 0, -1), range(steps - 1, -1, -1)):
        c = min(int(torch.round(torch.tensor(left, dtype=torch.float64) * (1 - (s / steps) / (t / steps)))), left)
        counts.append(c)
        left -= c
        if left == 0:
            break
    return [c for c in counts if c > 0]


def entropy(logits):
    p = F.softmax(logits.float(), dim=-1).clamp(min=1e-12)
    return -(p * p.log()).sum(-1)


def info_gain_reference(model, prompt, mask_id, gen_length, steps, block_length, n_cand, pos_temp, threshold,
                        generator):
    """`InfoGainLLaDASampler.sample` with use_cache=None at T = 0, for one sequence; every look-ahead state
    is one model call (the reference batches them)."""
    x = torch.full((1, len(prompt) + gen_length), mask_id, dtype=torch.long)
    x[0, : len(prompt)] = torch.tensor(prompt)
    p0, calls = len(prompt), 0
    nb = gen_length // block_length
    for b in range(nb):
        s, e = p0 + b * block_length, p0 + (b + 1) * block_length
        cached = None
        for k in dllm_linear_counts(int((x[0, s:e] == mask_id).sum()), math.ceil(steps / nb)):
            masked = [i for i in range(s, e) if x[0, i] == mask_id]
            if not masked:
                break
            if cached is not None:
                logits, cached = cached, None
            else:
                logits = model(x)[0]
                calls += 1
            x0 = logits.argmax(-1)
            if k >= len(masked):
                x[0, masked] = x0[masked]
                continue
            p = F.softmax(logits.float(), dim=-1)
            if threshold is not None:
                top1 = p.max(-1).values
                sure = [i for i in masked if top1[i] >= threshold]
                if sure:
                    sure = sorted(sure, key=lambda i: -float(top1[i]))[:k]
                    x[0, sure] = x0[sure]
                    continue
            conf = p[masked, x0[masked]]
            actions = []
            for c in range(n_cand):
                if c == 0:
                    order = sorted(range(len(masked)), key=lambda t: -float(conf[t]))[:k]
                else:
                    g = -torch.log(-torch.log(torch.rand(len(masked), generator=generator) + 1e-10) + 1e-10)
                    order = torch.topk(conf / pos_temp + g, k).indices.tolist()
                action = sorted(masked[t] for t in order)
                if action not in actions:
                    actions.append(action)
            if len(actions) == 1:
                x[0, actions[0]] = x0[actions[0]]
                continue
            now = entropy(logits)
            best = None
            for action in actions:
                state = x.clone()
                state[0, action] = x0[action]
                after = model(state)[0]
                calls += 1
                still = state[0] == mask_id
                score = -float(now[action].sum()) - float(entropy(after)[still].sum() / (still.sum() + 1e-10))
                if best is None or score > best[0]:
                    best = (score, state, after)
            x, cached = best[1], best[2]
    return x[0, p0:].tolist(), calls


@pytest.mark.parametrize("n, steps, expected", [(12, 6, [2] * 6), (8, 3, [3, 2, 3]), (8, 16, [1] * 8),
                                                (16, 8, [2] * 8), (5, 2, [2, 3])])
def test_linear_schedule_by_hand(n, steps, expected):
    """round(remaining / steps left), half to even: 8 over 3 steps = round(2.67) = 3, round(5 / 2) = 2, 3."""
    assert linear_schedule(n, steps) == dllm_linear_counts(n, steps) == expected


@pytest.mark.parametrize("n_cand, pos_temp, threshold, block_length, steps", [
    (8, 0.2, None, 16, 8), (4, 0.1, None, 8, 8), (3, 0.5, None, 16, 16), (8, 0.2, 0.0, 8, 8), (1, 0.2, None, 8, 8),
])
def test_info_gain_matches_reference(tiny_bert, n_cand, pos_temp, threshold, block_length, steps):
    sampler = build_sampler("info_gain", candidate_number=n_cand, position_temperature=pos_temp, threshold=threshold)
    seeds = [5, 6, 7]
    results = run(tiny_bert, sampler, PROMPTS, seeds=seeds, gen_length=16, steps=steps, block_length=block_length)
    for prompt, seed, result in zip(PROMPTS, seeds, results):
        tokens, calls = info_gain_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id,
                                            16, steps, block_length, n_cand, pos_temp, threshold,
                                            torch.Generator().manual_seed(seed))
        assert result.tokens == tokens and result.nfe == result.forwards == calls
    if n_cand > 1 and threshold is None:  # look-ahead steps cost more than one call each
        assert all(r.nfe > steps for r in results)


def test_look_ahead_prefers_the_action_that_settles_the_rest(tiny_bert):
    """Two masked slots, one written per step (steps = 2), two candidates. Current prediction (call 0):
    slot 0 p('a') = 0.6, slot 1 p('b') = 0.55 (two-point). After writing slot 0 the model is sure of slot 1
    (p = 0.99); after writing slot 1 it is unsure of slot 0 (p = 0.5). Costs C = H(0.6) = 0.673 vs
    H(0.55) = 0.688, next entropies H(0.99) = 0.056 vs H(0.5) = 0.693: J(slot 0) = -0.729 > J(slot 1) =
    -1.381, so slot 0 is written; its look-ahead is the next prediction, so 1 + 2 calls in all."""
    a, b = [tiny_bert.tokenizer.convert_tokens_to_ids(c) for c in "ab"]
    prompt = encode(tiny_bert, "go")
    mask = tiny_bert.mask_id

    def two(token, other, q):
        return {token: q, other: 1 - q}

    class LookAhead(ScriptedDenoiser):
        def _forward(self, input_ids, inputs_embeds, attention_mask, timestep):
            rows = []
            for seq in input_ids:
                slot0, slot1 = int(seq[self.prompt_length]), int(seq[self.prompt_length + 1])
                if slot0 == mask and slot1 == mask:
                    dist = {0: two(a, b, 0.6), 1: two(b, a, 0.55)}
                elif slot0 != mask:
                    dist = {1: two(b, a, 0.99)}
                else:
                    dist = {0: two(a, b, 0.5)}
                self.script = lambda n, d=dist: d
                rows.append(super()._forward(seq[None], None, None, None))
                self.calls -= 1
            self.calls += 1
            return torch.cat(rows)

    model = LookAhead(tiny_bert, len(prompt), None)
    sampler = build_sampler("info_gain", candidate_number=8, position_temperature=100.0, threshold=None)
    [result] = generate(model, [prompt], sampler, DecodeConfig(gen_length=2, steps=2, record_trajectory=True),
                        seeds=[0])
    h = lambda q: -(q * math.log(q) + (1 - q) * math.log(1 - q))  # noqa: E731
    assert -h(0.6) - h(0.99) > -h(0.55) - h(0.5)
    assert committed_per_step(result) == [{0}, {1}] and result.tokens == [a, b]
    assert result.nfe == 3


def test_bypass_writes_sure_slots_without_look_ahead(tiny_bert):
    """threshold 0.9: slots with top-1 probability >= 0.9 are written (at most the step's count, most
    probable first) with no look-ahead call."""
    prompt = encode(tiny_bert, "go")
    a, b = [tiny_bert.tokenizer.convert_tokens_to_ids(c) for c in "ab"]
    probabilities = (0.95, 0.5, 0.97, 0.92)
    script = {i: {a: q, b: 1 - q} for i, q in enumerate(probabilities)}
    model = ScriptedDenoiser(tiny_bert, len(prompt), lambda n: script)
    [result] = generate(model, [prompt], build_sampler("info_gain", threshold=0.9),
                        DecodeConfig(gen_length=4, steps=2, record_trajectory=True), seeds=[0])
    assert committed_per_step(result) == [{0, 2}, {1, 3}] and result.nfe == 2 == model.calls


def test_batch_composition_does_not_change_results(tiny_bert):
    seeds = [11, 12, 13]
    params = {"candidate_number": 4, "threshold": None}
    together = run(tiny_bert, build_sampler("info_gain", **params), PROMPTS, seeds=seeds, gen_length=16, steps=8,
                   block_length=8)
    for prompt, seed, batched in zip(PROMPTS, seeds, together):
        [alone] = run(tiny_bert, build_sampler("info_gain", **params), [prompt], seeds=[seed], gen_length=16, steps=8,
                      block_length=8)
        assert alone.tokens == batched.tokens and alone.nfe == batched.nfe


def test_validation():
    for bad in ({"candidate_number": 0}, {"position_temperature": -1.0}, {"threshold": 2.0}):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))}="):
            build_sampler("info_gain", **bad)


def test_hydra_config_states_the_defaults():
    text = (REPO / "configs" / "sampler" / "info_gain.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["params"] == build_sampler(config["name"]).params()
    for key in config["params"]:
        assert "#" in next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
    assert "docs/samplers/info_gain.md" in text and (REPO / "docs" / "samplers" / "info_gain.md").is_file()
