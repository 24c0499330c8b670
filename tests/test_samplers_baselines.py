"""Baseline samplers of the paper (issue 5): PC-Sampler, ReMDM (LLaDA loop and MDLM sigma-schedules),
EB-Sampler, LookUM and KLASS, each checked against an independent re-statement of its reference
(`tests/reference_samplers.py`) on a tiny random BERT (same tokens, same NFE), on hand-computed
examples (scripted denoisers), and for its compute accounting."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import reference_samplers as ref
from boe_eval.decoding.loop import DecodeConfig, generate
from boe_eval.errors import ConfigError
from boe_eval.models.denoiser import Denoiser
from boe_eval.samplers import SAMPLERS, build_sampler
from boe_eval.samplers.klass import KlassSampler
from boe_eval.samplers.lookum import LookumSampler, mean_masked_entropy
from boe_eval.samplers.pc_sampler import PcSampler, load_background_frequencies, position_prior
from boe_eval.samplers.remdm import RemdmLladaSampler

REPO = Path(__file__).resolve().parent.parent
PROMPTS = ["the cat sat", "2+2=", "xyz q"]


def reference_model(denoiser: Denoiser):
    """x [1, L] -> logits [1, L, V] with the harness's forbidden ids at -inf (no padding: batch of 1)."""
    forbidden = list(denoiser.forbidden_ids)

    def model(x):
        with torch.no_grad():
            logits = denoiser.logits(x, attention_mask=torch.ones_like(x)).float()
        logits[..., forbidden] = float("-inf")
        return logits

    return model


def encode(denoiser: Denoiser, text: str) -> list[int]:
    return denoiser.tokenizer(text, add_special_tokens=False)["input_ids"]


def run(denoiser, sampler, prompts, seeds=None, **decode):
    return generate(denoiser, [encode(denoiser, p) for p in prompts], sampler, DecodeConfig(**decode), seeds=seeds)


class ScriptedDenoiser(Denoiser):
    """A denoiser whose n-th call returns `script(n)`: {generation slot: {token: probability}}; other
    slots get a flat prediction. Wraps the tiny BERT only for its tokenizer and device."""

    def __init__(self, base: Denoiser, prompt_length: int, script) -> None:
        super().__init__(base.model, base.tokenizer, mask_id=base.mask_id, forbidden_ids=base.forbidden_ids)
        self.prompt_length, self.script, self.calls = prompt_length, script, 0

    def _forward(self, input_ids, inputs_embeds, attention_mask, timestep):
        batch, width = input_ids.shape
        logits = torch.zeros((batch, width, self.vocab_size))
        for slot, dist in self.script(self.calls).items():
            row = torch.full((self.vocab_size,), float("-inf"))
            for token, probability in dist.items():
                row[token] = math.log(probability)
            logits[:, self.prompt_length + slot] = row
        self.calls += 1
        return logits


def letters(denoiser, text):
    return [denoiser.tokenizer.convert_tokens_to_ids(c) for c in text]


def two_point(denoiser, p, first="a", second="b"):
    a, b = letters(denoiser, first + second)
    return {a: p, b: 1 - p}


def entropy(*probabilities):
    return -sum(p * math.log(p) for p in probabilities)


def committed_per_step(result) -> list[set[int]]:
    return [set(step["committed"]) for step in result.trajectory]


# ------------------------------------------------------------------------------ PC-Sampler
@pytest.fixture(scope="module")
def frequency_file(tiny_bert_dir, tmp_path_factory):
    """A frequency file written by scripts/build_token_frequencies.py from a small local corpus."""
    out = tmp_path_factory.mktemp("freq")
    corpus = out / "corpus.txt"
    corpus.write_text("the cat sat on the mat\n" * 20 + "2+2=4 and 3+3=6\n" * 5 + "zebra quiz\n")
    target = out / "f.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_token_frequencies.py"), "--model", tiny_bert_dir,
                    "--corpus", str(corpus), "--output", str(target)], check=True, capture_output=True)
    return target


def test_frequency_script_counts_the_corpus(frequency_file, tiny_bert):
    table = json.loads(frequency_file.read_text())
    text = Path(frequency_file.parent / "corpus.txt").read_text()
    ids = encode(tiny_bert, text)
    assert table["num_tokens"] == len(ids)
    t = tiny_bert.tokenizer.convert_tokens_to_ids("t")
    assert table["frequencies"][str(t)] == pytest.approx(ids.count(t) / len(ids))
    assert sum(table["frequencies"].values()) == pytest.approx(1.0)
    loaded = load_background_frequencies(frequency_file)
    assert loaded.unseen == pytest.approx(1 / len(ids))


@pytest.mark.parametrize("block_length, lambd", [(16, 0.25), (8, 0.25), (4, 1.0)])
def test_pc_sampler_matches_reference(tiny_bert, frequency_file, block_length, lambd):
    sampler = build_sampler("pc_sampler", position_decay=lambd, frequency_file=str(frequency_file))
    table = load_background_frequencies(frequency_file).as_tensor(tiny_bert.vocab_size, torch.device("cpu"))
    results = run(tiny_bert, sampler, PROMPTS, gen_length=16, steps=8, block_length=block_length)
    for prompt, result in zip(PROMPTS, results):
        tokens, calls = ref.pc_sampler_reference(reference_model(tiny_bert), encode(tiny_bert, prompt),
                                                 tiny_bert.mask_id, 16, 8, block_length, lambd, 10.0, table)
        assert result.tokens == tokens
        assert result.nfe == result.forwards == calls == 8 and result.backwards == 0


def test_pc_sampler_position_prior_counts_from_the_block_start(tiny_bert):
    seen = []

    class Spy(PcSampler):
        def select(self, ctx):
            seen.append((ctx.block_index, ctx.eligible.clone(), position_prior(ctx, 0.5)))
            return super().select(ctx)

    spy = Spy(build_sampler("pc_sampler", position_decay=0.5, uniform_prior=True).config)
    prompt = encode(tiny_bert, "abcde")
    # whole canvas: positions are checked in canvas columns
    generate(tiny_bert, [prompt], spy, DecodeConfig(gen_length=12, steps=6, block_length=4, logits_window=False))
    assert {b for b, _, _ in seen} == {0, 1, 2}
    for block_index, eligible, prior in seen:
        block_start = len(prompt) + 4 * block_index
        for i in eligible[0].nonzero()[:, 0].tolist():
            assert prior[0, i].item() == pytest.approx(math.exp(-0.5 * (i - block_start)))
        if eligible[0, block_start]:
            assert prior[0, block_start].item() == 1.0


def test_pc_sampler_needs_frequencies_or_an_explicit_uniform_prior(tiny_bert, tiny_bert_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"no background token frequencies.*uniform_prior=true"):
        run(tiny_bert, build_sampler("pc_sampler"), PROMPTS[:1], gen_length=8, steps=4)
    uniform = build_sampler("pc_sampler", uniform_prior=True)
    assert uniform.params()["uniform_prior"] is True
    flat = torch.full((tiny_bert.vocab_size,), 1 / tiny_bert.vocab_size, dtype=torch.float64)
    [result] = run(tiny_bert, uniform, PROMPTS[:1], gen_length=8, steps=4, block_length=4)
    tokens, _ = ref.pc_sampler_reference(reference_model(tiny_bert), encode(tiny_bert, PROMPTS[0]), tiny_bert.mask_id,
                                         8, 4, 4, 0.25, 10.0, flat)
    assert result.tokens == tokens
    # a token_frequencies.json beside the tokenizer is found without configuration
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model_dir)
    (model_dir / "token_frequencies.json").write_text(json.dumps({"num_tokens": 10, "frequencies": {"5": 0.5}}))
    from boe_eval.models import load_denoiser

    beside = load_denoiser(model_dir)
    [result] = run(beside, build_sampler("pc_sampler"), PROMPTS[:1], gen_length=8, steps=4, block_length=4)
    table = torch.full((tiny_bert.vocab_size,), 0.1, dtype=torch.float64)
    table[5] = 0.5
    tokens, _ = ref.pc_sampler_reference(reference_model(beside), encode(beside, PROMPTS[0]), beside.mask_id,
                                         8, 4, 4, 0.25, 10.0, table)
    assert result.tokens == tokens


def test_frequency_file_formats_and_errors(tmp_path, tiny_bert):
    reference_format = tmp_path / "pc.json"
    reference_format.write_text(json.dumps({"num_token": 200, "p_baseline_dict": {"7": 50, "9": 10}}))
    loaded = load_background_frequencies(reference_format)
    assert loaded.frequencies == {7: 0.25, 9: 0.05} and loaded.unseen == 1 / 200
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"3": 0.5, "4": 0.5}))
    table = load_background_frequencies(flat).as_tensor(10, torch.device("cpu"))
    assert table.tolist() == [0, 0, 0, 0.5, 0.5, 0, 0, 0, 0, 0]
    with pytest.raises(ConfigError, match=r"does not exist.*build_token_frequencies"):
        build_sampler("pc_sampler", frequency_file=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ConfigError, match=r"is not valid JSON"):
        build_sampler("pc_sampler", frequency_file=str(tmp_path / "bad.json"))
    (tmp_path / "neg.json").write_text(json.dumps({"3": -1}))
    with pytest.raises(ConfigError, match=r"frequencies >= 0"):
        build_sampler("pc_sampler", frequency_file=str(tmp_path / "neg.json"))
    with pytest.raises(ConfigError, match=r"contradict"):
        build_sampler("pc_sampler", frequency_file=str(flat), uniform_prior=True)
    (tmp_path / "big.json").write_text(json.dumps({str(tiny_bert.vocab_size + 3): 1.0}))
    with pytest.raises(ConfigError, match=r"another tokenizer"):
        run(tiny_bert, build_sampler("pc_sampler", frequency_file=str(tmp_path / "big.json")), PROMPTS[:1],
            gen_length=4, steps=4)


# ------------------------------------------------------------------------------ ReMDM-LLaDA
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("block_length, steps, remask", [(16, 16, 1), (8, 16, 2), (16, 8, 1)])
def test_remdm_llada_matches_reference(tiny_bert, temperature, block_length, steps, remask):
    sampler = build_sampler("remdm_llada", remask_count=remask, token_temperature=temperature)
    seeds = [11, 12, 13]
    results = run(tiny_bert, sampler, PROMPTS, seeds=seeds, gen_length=16, steps=steps, block_length=block_length)
    for prompt, seed, result in zip(PROMPTS, seeds, results):
        generator = torch.Generator().manual_seed(seed) if temperature else None
        tokens, calls = ref.llada_remdm_reference(reference_model(tiny_bert), encode(tiny_bert, prompt),
                                                  tiny_bert.mask_id, 16, steps, block_length, remask, generator)
        assert result.tokens == tokens
        assert result.nfe == result.forwards == calls == 2 * steps


def test_remdm_llada_remask_schedule(tiny_bert):
    """Block of S = 8 steps: r = 7 normal steps, 8 remask iterations, 1 normal step; each remask
    iteration is preceded by masking `remask_count` tokens of the block with the lowest commit
    confidence, and those tokens come back later."""
    log = []

    class Spy(RemdmLladaSampler):
        def select(self, ctx):
            decision = super().select(ctx)
            remasked = [] if decision.remask is None else (decision.remask[0].nonzero()[:, 0] - ctx.gen_start[0]).tolist()
            log.append((ctx.block_index, ctx.block_step, int(ctx.budget[0]), int(decision.commit[0].sum()), remasked))
            return decision

    spy = Spy(build_sampler("remdm_llada", remask_count=2).config)
    [result] = generate(tiny_bert, [encode(tiny_bert, "hi")], spy, DecodeConfig(gen_length=16, steps=16, block_length=8),
                        seeds=[3])
    assert result.nfe == 32 and tiny_bert.mask_id not in result.tokens
    for block in (0, 1):
        steps = [entry for entry in log if entry[0] == block]
        assert [s[1] for s in steps] == list(range(16))
        assert [s[2] for s in steps] == [1] * 7 + [2] * 8 + [1]  # budgets: 7 normal, 8 remask, 1 normal
        assert [s[3] for s in steps] == [1] * 7 + [2] * 8 + [1]
        remasks = [len(s[4]) for s in steps]
        assert remasks == [0] * 6 + [2] * 8 + [0, 0]  # at the end of iterations 6..13 = before 7..14
        for s in steps:
            assert all(block * 8 <= slot < block * 8 + 8 for slot in s[4])


def test_remdm_llada_validation():
    for bad in ({"remask_count": 0}, {"remask_start_fraction": 1.5}, {"token_temperature": -1.0}):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))}="):
            build_sampler("remdm_llada", **bad)


# ------------------------------------------------------------------------------ ReMDM sigma-schedules
def time_conditioned(base: Denoiser) -> Denoiser:
    """The tiny BERT declared time-conditioned (it ignores the timestep), standing in for an MDLM."""
    return Denoiser(base.model, base.tokenizer, mask_id=base.mask_id, forbidden_ids=base.forbidden_ids,
                    time_conditioned=True, name="tiny-time-conditioned")


@pytest.mark.parametrize("name, strategy, params", [
    ("remdm_cap", "remdm-cap", {"eta": 0.008}),
    ("remdm_rescale", "remdm-rescale", {"eta": 0.015}),
    ("remdm_loop", "remdm-loop", {"eta": 0.02}),
    ("remdm_cap", "remdm-cap", {"eta": 0.3}),
    ("remdm_loop", "remdm-loop", {"eta": 0.1}),
])
def test_remdm_schedule_transition_probabilities(name, strategy, params):
    sampler = build_sampler(name, **params)
    steps = 40
    dt = (1 - 1e-5) / steps
    for i in range(steps):
        t, s = sampler.times(i, steps)
        assert t == pytest.approx(1 - i * dt) and s == pytest.approx(t - dt)
        assert sampler.transition(t, s) == pytest.approx(ref.mdlm_remdm_step_probabilities(strategy, t, dt, params["eta"]))


def test_remdm_schedules_with_eta_zero_are_mdlm():
    for name in ("remdm_cap", "remdm_rescale"):
        sampler = build_sampler(name, eta=0.0)
        for t, s in ((1.0, 0.75), (0.5, 0.25), (0.2, 0.1)):
            unmask, remask = sampler.transition(t, s)
            assert unmask == pytest.approx((t - s) / t) and remask == 0.0


@pytest.mark.parametrize("name, strategy, eta", [("remdm_cap", "remdm-cap", 0.3), ("remdm_rescale", "remdm-rescale", 0.5),
                                                 ("remdm_loop", "remdm-loop", 0.1)])
def test_remdm_schedules_match_reference(tiny_bert, name, strategy, eta):
    model = time_conditioned(tiny_bert)
    sampler = build_sampler(name, eta=eta)
    seeds = [5, 6, 7]
    results = run(model, sampler, PROMPTS, seeds=seeds, gen_length=12, steps=12)
    for prompt, seed, result in zip(PROMPTS, seeds, results):
        tokens, calls = ref.remdm_schedule_reference(reference_model(tiny_bert), encode(tiny_bert, prompt),
                                                     tiny_bert.mask_id, 12, 12, strategy, eta,
                                                     torch.Generator().manual_seed(seed))
        assert result.tokens == tokens and result.nfe == calls
        assert result.nfe in (12, 13) and tiny_bert.mask_id not in result.tokens


def test_remdm_schedules_remask_written_tokens(tiny_bert):
    remasked = []

    sampler = build_sampler("remdm_loop", eta=0.1)
    original = sampler.select

    def spy(ctx):
        decision = original(ctx)
        remasked.append(int(decision.remask.sum()) if decision.remask is not None else 0)
        return decision

    sampler.select = spy
    run(time_conditioned(tiny_bert), sampler, PROMPTS, seeds=[1, 2, 3], gen_length=16, steps=16)
    assert sum(remasked) > 0


def test_remdm_schedules_need_a_time_conditioned_denoiser(tiny_bert):
    with pytest.raises(ConfigError, match=r"needs a time-conditioned.*remdm_llada"):
        run(tiny_bert, build_sampler("remdm_cap"), PROMPTS[:1], gen_length=4, steps=4)
    with pytest.raises(ConfigError, match=r"t_on=.*t_off="):
        build_sampler("remdm_loop", t_on=0.01, t_off=0.5)


# ------------------------------------------------------------------------------ EB-Sampler
def test_eb_gamma_zero_is_one_token_per_step_in_confidence_order(tiny_bert):
    eb = run(tiny_bert, build_sampler("eb", gamma=0.0), PROMPTS, gen_length=16, steps=16, block_length=8)
    top1 = run(tiny_bert, build_sampler("confidence"), PROMPTS, gen_length=16, steps=16, block_length=8)
    for prompt, a, b in zip(PROMPTS, eb, top1):
        assert a.tokens == b.tokens and a.nfe == b.nfe == 16
        tokens, calls = ref.confidence_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id,
                                                 16, 16, 8)
        assert a.tokens == tokens and calls == 16


def test_eb_gamma_infinite_commits_each_block_in_one_step(tiny_bert):
    results = run(tiny_bert, build_sampler("eb", gamma=math.inf), PROMPTS, gen_length=16, steps=16, block_length=8,
                  record_trajectory=True)
    model = reference_model(tiny_bert)
    for prompt, result in zip(PROMPTS, results):
        assert result.nfe == 2 and [len(s) for s in committed_per_step(result)] == [8, 8]
        ids = encode(tiny_bert, prompt)
        x = torch.tensor([ids + [tiny_bert.mask_id] * 16])
        first = model(x)[0].argmax(-1)
        assert result.tokens[:8] == first[len(ids):len(ids) + 8].tolist()


@pytest.mark.parametrize("gamma, expected", [(0.05, {1}), (0.1, {1, 3}), (0.5, {1, 3, 2}), (1.0, {0, 1, 2, 3})])
def test_eb_prefix_rule_on_a_hand_computed_example(tiny_bert, gamma, expected):
    """Slots 0..3 with two-point predictions p = 0.7, 0.99, 0.8, 0.9: confidence order 1, 3, 2, 0 with
    entropies 0.0560, 0.3251, 0.5004, 0.6109 nats; sum minus max of the prefixes: 0, 0.0560, 0.3811,
    0.8815."""
    h = [entropy(q, 1 - q) for q in (0.99, 0.9, 0.8, 0.7)]
    assert [round(v, 4) for v in h] == [0.0560, 0.3251, 0.5004, 0.6109]
    excess = [sum(h[:n]) - max(h[:n]) for n in range(1, 5)]
    assert [round(v, 4) for v in excess] == [0.0, 0.056, 0.3811, 0.8815]
    prompt = encode(tiny_bert, "go")
    script = {i: two_point(tiny_bert, q) for i, q in enumerate((0.7, 0.99, 0.8, 0.9))}
    model = ScriptedDenoiser(tiny_bert, len(prompt), lambda n: script)
    [result] = generate(model, [prompt], build_sampler("eb", gamma=gamma), DecodeConfig(gen_length=4, steps=4,
                                                                                       record_trajectory=True))
    assert committed_per_step(result)[0] == expected
    assert result.nfe == len(committed_per_step(result))


def test_eb_entropy_proxy_orders_by_entropy(tiny_bert):
    """Slot 0: p = (0.55, 0.15, 0.15, 0.15), confidence 0.55, entropy 1.18; slot 1: p = (0.5, 0.5),
    confidence 0.5, entropy 0.69: confidence picks slot 0 first, entropy slot 1."""
    a, b, c, d = letters(tiny_bert, "abcd")
    script = {0: {a: 0.55, b: 0.15, c: 0.15, d: 0.15}, 1: {a: 0.5, b: 0.5}}
    prompt = encode(tiny_bert, "go")
    firsts = {}
    for proxy in ("confidence", "entropy"):
        model = ScriptedDenoiser(tiny_bert, len(prompt), lambda n: script)
        [result] = generate(model, [prompt], build_sampler("eb", gamma=0.0, error_proxy=proxy),
                            DecodeConfig(gen_length=2, steps=2, record_trajectory=True))
        firsts[proxy] = committed_per_step(result)[0]
    assert firsts == {"confidence": {0}, "entropy": {1}}


@pytest.mark.parametrize("gamma, proxy, block_length", [(0.01, "confidence", 16), (0.5, "confidence", 8),
                                                          (1.5, "entropy", 8), (0.25, "margin", 16)])
def test_eb_matches_reference(tiny_bert, gamma, proxy, block_length):
    results = run(tiny_bert, build_sampler("eb", gamma=gamma, error_proxy=proxy), PROMPTS, gen_length=16, steps=16,
                  block_length=block_length)
    for prompt, result in zip(PROMPTS, results):
        tokens, calls = ref.eb_sampler_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id,
                                                 16, gamma, block_length, proxy)
        assert result.tokens == tokens and result.nfe == result.forwards == calls


def test_eb_confidence_proxy_is_the_top1_probability_even_when_sampling(tiny_bert):
    """At T = 1 the written token is sampled, but the order (gamma = 0: one slot per step) follows
    max_v p(v) of the first forward, which does not depend on the sample."""
    model = reference_model(tiny_bert)
    results = run(tiny_bert, build_sampler("eb", gamma=0.0), PROMPTS, seeds=[1, 2, 3], gen_length=8, steps=8,
                  temperature=1.0, record_trajectory=True)
    for prompt, result in zip(PROMPTS, results):
        ids = encode(tiny_bert, prompt)
        top1 = torch.softmax(model(torch.tensor([ids + [tiny_bert.mask_id] * 8]))[0], -1).max(-1).values
        assert committed_per_step(result)[0] == {int(top1[len(ids):].argmax())}


def test_eb_validation():
    with pytest.raises(ConfigError, match=r"gamma=-1"):
        build_sampler("eb", gamma=-1.0)
    with pytest.raises(ConfigError, match=r"error_proxy='loss' is unknown"):
        build_sampler("eb", error_proxy="loss")


# ------------------------------------------------------------------------------ LookUM
@pytest.mark.parametrize("k", [1, 2, 3])
def test_lookum_spends_one_plus_k_forwards_per_step(tiny_bert, k):
    results = run(tiny_bert, build_sampler("lookum", k=k), PROMPTS, seeds=[1, 2, 3], gen_length=16, steps=8,
                  block_length=8)
    for result in results:
        assert result.nfe == result.forwards == (1 + k) * 8 and result.backwards == 0
        assert tiny_bert.mask_id not in result.tokens


def test_lookum_with_one_path_over_a_budget_sized_pool_is_confidence_order(tiny_bert):
    lookum = run(tiny_bert, build_sampler("lookum", k=1, pool_size=2), PROMPTS, gen_length=16, steps=8, block_length=8)
    for prompt, result in zip(PROMPTS, lookum):
        tokens, calls = ref.confidence_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id,
                                                 16, 8, 8)
        assert result.tokens == tokens and result.nfe == calls + 1 * 8


def test_lookum_keeps_the_least_uncertain_lookahead(tiny_bert):
    """With a near-zero selection temperature, importance resampling keeps the candidate whose
    look-ahead state has the lowest mean masked entropy, recomputed here with a direct forward."""
    checks = []
    model = reference_model(tiny_bert)

    class Spy(LookumSampler):
        def candidate_sets(self, ctx):
            self.candidates = super().candidate_sets(ctx)
            return self.candidates

        def select(self, ctx):
            decision = super().select(ctx)
            uncertainty = []
            for candidate in self.candidates:
                x = torch.where(candidate, ctx.x0, ctx.x)
                uncertainty.append(mean_masked_entropy(model(x), ctx.masked & ~candidate).item())
            best = min(range(len(uncertainty)), key=uncertainty.__getitem__)
            checks.append(bool(torch.equal(decision.commit, self.candidates[best])))
            checks.append(all(int(c.sum()) == int(ctx.budget[0]) for c in self.candidates))
            pool = set(torch.topk(torch.where(ctx.eligible, ctx.confidence, -1.0)[0], min(5, int(ctx.eligible.sum()))).indices.tolist())
            checks.append(all(set(c[0].nonzero()[:, 0].tolist()) <= pool for c in self.candidates))
            return decision

    spy = Spy(build_sampler("lookum", k=3, selection_temperature=1e-9).config)
    generate(tiny_bert, [encode(tiny_bert, "abc")], spy,  # whole canvas: re-checked with the raw model on ctx.x
             DecodeConfig(gen_length=16, steps=8, block_length=8, logits_window=False), seeds=[4])
    assert len(checks) == 24 and all(checks)


def test_lookum_validation():
    for bad in ({"k": 0}, {"pool_size": -2}, {"selection_temperature": 0.0}):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))}="):
            build_sampler("lookum", **bad)


# ------------------------------------------------------------------------------ KLASS
@pytest.mark.parametrize("kappa, expected", [(0.25, [{3}, {2}, {0, 1}]), (0.2, [{3}, {2}, {0}, {1}])])
def test_klass_kl_gate_on_a_hand_computed_example(tiny_bert, kappa, expected):
    """Four slots, one token per planned step, tau = 0.6, H = 2. Slots 3 and 2 are confident and
    stable (committed by the fallback at steps 0 and 1, when the gate is still closed). Slot 0 keeps
    p = (0.9, 0.1): KLs 0, 0. Slot 1 moves from (0.6, 0.4) to (0.9, 0.1) at the second forward:
    KL = 0.9 ln(0.9/0.6) + 0.1 ln(0.1/0.4) = 0.2263, then 0. At step 2 slot 1 passes kappa = 0.25 but
    not kappa = 0.2 (it then needs one more step)."""
    kl = 0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4)
    assert round(kl, 4) == 0.2263

    def script(n):
        return {0: two_point(tiny_bert, 0.9), 1: two_point(tiny_bert, 0.6 if n == 0 else 0.9),
                2: two_point(tiny_bert, 0.95), 3: two_point(tiny_bert, 0.99)}

    prompt = encode(tiny_bert, "go")
    model = ScriptedDenoiser(tiny_bert, len(prompt), script)
    sampler = build_sampler("klass", confidence_threshold=0.6, kl_threshold=kappa, kl_history=2)
    [result] = generate(model, [prompt], sampler, DecodeConfig(gen_length=4, steps=4, record_trajectory=True))
    assert committed_per_step(result) == expected and result.nfe == len(expected)


def test_klass_confidence_gate(tiny_bert):
    """Same script with tau = 0.95: no slot is ready, every step is the top-1 fallback."""
    script = {0: two_point(tiny_bert, 0.9), 1: two_point(tiny_bert, 0.9), 2: two_point(tiny_bert, 0.95),
              3: two_point(tiny_bert, 0.99)}
    prompt = encode(tiny_bert, "go")
    model = ScriptedDenoiser(tiny_bert, len(prompt), lambda n: script)
    [result] = generate(model, [prompt], build_sampler("klass", confidence_threshold=0.95, kl_threshold=1.0),
                        DecodeConfig(gen_length=4, steps=4, record_trajectory=True))
    assert committed_per_step(result) == [{3}, {2}, {0}, {1}]


@pytest.mark.parametrize("tau, kappa", [(0.0, 1e-3), (0.02, 0.05), (0.0, 1.0), (0.9, 0.01)])
def test_klass_matches_reference(tiny_bert, tau, kappa):
    results = run(tiny_bert, build_sampler("klass", confidence_threshold=tau, kl_threshold=kappa), PROMPTS,
                  gen_length=24, steps=24, block_length=8)
    nfes = []
    for prompt, result in zip(PROMPTS, results):
        tokens, calls = ref.klass_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id,
                                            24, 24, 8, tau, kappa)
        assert result.tokens == tokens and result.nfe == result.forwards == calls
        nfes.append(calls)
    if (tau, kappa) == (0.0, 1.0):
        assert max(nfes) < 24  # blocks exit early: the gate did open
    if (tau, kappa) == (0.9, 0.01):
        assert nfes == [24] * 3  # never ready: pure confidence fallback


def test_klass_validation():
    for bad in ({"confidence_threshold": 1.0}, {"kl_threshold": 0.0}, {"kl_history": 0}):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))}="):
            build_sampler("klass", **bad)


# ------------------------------------------------------------------------------ all of them
STATEFUL = [("remdm_llada", {}), ("lookum", {}), ("klass", {"confidence_threshold": 0.0, "kl_threshold": 0.05}),
            ("eb", {"gamma": 0.5}), ("pc_sampler", {"uniform_prior": True})]


@pytest.mark.parametrize("name, params", STATEFUL)
def test_batch_composition_does_not_change_results(tiny_bert, name, params):
    seeds = [21, 22, 23]
    together = run(tiny_bert, build_sampler(name, **params), PROMPTS, seeds=seeds, gen_length=16, steps=8, block_length=8)
    for prompt, seed, batched in zip(PROMPTS, seeds, together):
        [alone] = run(tiny_bert, build_sampler(name, **params), [prompt], seeds=[seed], gen_length=16, steps=8,
                      block_length=8)
        assert alone.tokens == batched.tokens and alone.nfe == batched.nfe


def test_batch_composition_remdm_schedule(tiny_bert):
    model = time_conditioned(tiny_bert)
    together = run(model, build_sampler("remdm_loop", eta=0.1), PROMPTS, seeds=[1, 2, 3], gen_length=12, steps=12)
    [alone] = run(model, build_sampler("remdm_loop", eta=0.1), PROMPTS[1:2], seeds=[2], gen_length=12, steps=12)
    assert alone.tokens == together[1].tokens and alone.nfe == together[1].nfe


CONFIGS = ["pc_sampler", "remdm_llada", "remdm_cap", "remdm_rescale", "remdm_loop", "eb", "lookum", "klass"]


@pytest.mark.parametrize("config_name", CONFIGS)
def test_hydra_configs_state_the_defaults(config_name):
    """Each config names a registered sampler and lists exactly its parameters at their defaults, with
    a comment citing where each default comes from."""
    path = REPO / "configs" / "sampler" / f"{config_name}.yaml"
    text = path.read_text()
    config = yaml.safe_load(text)
    assert config["name"] in SAMPLERS
    sampler = build_sampler(config["name"])
    assert config["params"] == sampler.params()
    for key in config["params"]:
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
        assert "#" in line, f"{config_name}.yaml: {key} has no comment naming its source"
