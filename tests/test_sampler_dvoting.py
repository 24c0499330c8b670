"""dVoting (`boe_eval/samplers/dvoting.py`): parity with a straightforward restatement of `fscdc/dVoting`
`generate_entropy_adaptive(enable_remask_sampling=True)` + its majority vote (same tokens, same NFE) on a tiny random
BERT, hand-computed steps on a scripted denoiser, the remask and stop rules by hand, and its knob in a sweep."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from boe_eval.decoding.loop import DecodeConfig, generate
from boe_eval.errors import ConfigError
from boe_eval.harness.sweep import plan_sweep
from boe_eval.samplers import build_sampler
from boe_eval.samplers.dvoting import remasked_canvas, should_stop
from fixtures.models import dream, dream_dir, llada, llada_dir  # noqa: F401  (pytest fixtures)
from test_sweep import compose
from test_samplers_baselines import PROMPTS, ScriptedDenoiser, encode, letters, reference_model, run, two_point


def dvoting_reference(model, prompt, mask_id, gen_length, block_length, upper_bound, entropy_thresh, temperature,
                      generator, decode):
    """The reference's loop for one prompt, restated: sequential samples; `func_remask` (fresh canvas for the first
    upper_bound/2 + 1 samples, then the unanimous tokens kept and the last quarter masked); `answer_level_consistency`
    stop before each sample after the second; block-wise entropy commits with the one-token guard. Gumbel draws: fp64
    uniforms for the masked generation slots of each forward, in slot order (the harness's per-row convention)."""
    p0 = len(prompt)
    x_final, total_steps, answers = None, 0, []
    i = 0
    while i < upper_bound:
        if i > 1:
            counts = [c for _, c in Counter(a for a in answers if a).most_common()]
            if sum(counts) > 0:
                ratio = counts[0] / sum(counts)
                if counts[0] > int(upper_bound / 2) or (ratio == 1.0 and counts[0] >= int(upper_bound / 2)):
                    break
        i += 1
        x = torch.full((1, p0 + gen_length), mask_id, dtype=torch.long)
        x[0, :p0] = torch.tensor(prompt)
        if x_final is not None and i > int(upper_bound / 2 + 1):
            past = x_final[:, p0:]
            for idx in range(gen_length):
                values, counts = torch.unique(past[:, idx], return_counts=True)
                top = int(torch.argmax(counts))
                x[0, p0 + idx] = values[top] if counts[top].item() / past.shape[0] >= 1.0 else mask_id
            quarter = gen_length // 4
            if quarter:
                x[0, p0 + gen_length - quarter:] = mask_id
        while (x[0, p0:] == mask_id).any():
            mask_index = x == mask_id
            logits = model(x)[0].double()
            x0 = logits.argmax(-1)
            masked = mask_index[0].nonzero().squeeze(1)
            if temperature > 0:
                u = torch.rand((masked.numel(), logits.shape[-1]), generator=generator, dtype=torch.float64)
                x0[masked] = (logits[masked] / temperature - torch.log(-torch.log(u.clamp_min(1e-300)))).argmax(-1)
            p = F.softmax(logits, dim=-1)
            entropy = -(p * torch.log(p + 1e-12)).sum(-1)
            confidence = torch.where(mask_index[0], -entropy, torch.tensor(float("-inf"), dtype=torch.float64))
            guard = True
            for blk in range(gen_length // block_length):
                lo, hi = p0 + blk * block_length, p0 + (blk + 1) * block_length
                if not mask_index[0, lo:hi].any():
                    continue
                if (x[0, p0:lo] == mask_id).any():
                    break
                select = (entropy[lo:hi] < entropy_thresh) & mask_index[0, lo:hi]
                if not select.any() and guard:
                    best = lo + int(torch.argmax(confidence[lo:hi]))
                    x[0, best] = x0[best]
                    guard = False
                    continue
                idx = lo + select.nonzero().squeeze(1)
                x[0, idx] = x0[idx]
                if (x[0, lo:hi] == mask_id).any():
                    break
            total_steps += 1
        x_final = x.clone() if x_final is None else torch.cat([x_final, x.clone()], dim=0)
        text = decode(x[0, p0:].tolist())
        answers.append(text if text else None)
    counts = Counter(a for a in answers if a).most_common()
    pick = answers.index(counts[0][0]) if counts else len(answers) - 1
    return x_final[pick, p0:].tolist(), total_steps


@pytest.mark.parametrize("samples, threshold, temperature, block_length", [
    (5, 0.3, 0.6, 4),    # the reference's defaults: the guard writes one slot per forward on a random BERT
    (5, 4.52, 0.03, 8),  # a threshold that lets some slots through at once; samples 4, 5 keep unanimous slots
    (5, 4.6, 0.02, 8),   # every slot passes: one forward writes both blocks (the next block with the same logits)
    (4, 4.0, 2.0, 16),   # even N, one block, samples that disagree everywhere
    (3, 0.3, 0.0, 8),    # greedy: identical samples, the stop after the second
])
def test_dvoting_matches_the_reference(tiny_bert, samples, threshold, temperature, block_length):
    sampler = build_sampler("dvoting", samples=samples, entropy_threshold=threshold, token_temperature=temperature)
    seeds = [3, 4, 5]
    results = run(tiny_bert, sampler, PROMPTS, seeds=seeds, gen_length=16, steps=16, block_length=block_length)
    decode = lambda ids: tiny_bert.tokenizer.decode(ids, skip_special_tokens=True).strip()  # noqa: E731
    used = []
    for prompt, seed, result in zip(PROMPTS, seeds, results):
        tokens, calls = dvoting_reference(reference_model(tiny_bert), encode(tiny_bert, prompt), tiny_bert.mask_id,
                                          16, block_length, samples, threshold, temperature,
                                          torch.Generator().manual_seed(seed), decode)
        assert (result.tokens, result.nfe, result.forwards) == (tokens, calls, calls)
        used.append(calls)
    if threshold == 4.52:  # the remasked samples re-decode fewer slots than a fresh one (16 forwards at most)
        assert min(used) < 5 * 16
    if threshold == 4.6:
        assert used == [5, 5, 5]
    if temperature == 0:
        assert sampler.samples_used == [2, 2, 2]


def test_hand_computed_entropy_rule_and_greedy_stop(tiny_bert):
    """Slots 0, 2, 3 are sharp (entropy 0.0), slot 1 is a coin flip (ln 2 > 0.3). Blocks of 2. Forward 1: block 0
    writes slot 0, slot 1 stays masked, stop. Forward 2: nothing in block 0 passes, the guard writes slot 1 (the
    only masked one), block 1 is then open and writes slots 2 and 3 with the same logits. Greedy: every sample is the
    same, so after 2 samples the answer is unanimous with 2 >= floor(5/2) votes: NFE = 2 x 2."""
    a, b, c = letters(tiny_bert, "abc")
    script = lambda n: {0: {a: 1.0}, 1: two_point(tiny_bert, 0.5), 2: {b: 1.0}, 3: {c: 1.0}}  # noqa: E731
    prompt = encode(tiny_bert, "xy")
    model = ScriptedDenoiser(tiny_bert, len(prompt), script)
    sampler = build_sampler("dvoting", token_temperature=0.0)
    (result,) = generate(model, [prompt], sampler, DecodeConfig(gen_length=4, steps=4, block_length=2,
                                                                record_trajectory=True))
    assert result.tokens == [a, a, b, c]  # argmax of the coin flip: the first of the tied tokens
    assert (result.nfe, model.calls, sampler.samples_used) == (4, 4, [2])


def test_remask_rule_by_hand():
    """Fresh canvases for samples 1..floor(N/2)+1; then unanimous slots kept, disagreements and the last quarter
    (8 // 4 = 2 slots) masked."""
    m = 9
    prompt_canvas = torch.tensor([1, 2, m, m, m, m, m, m, m, m])
    s1 = torch.tensor([1, 2, 5, 5, 6, 7, 7, 8, 3, 3])
    s2 = torch.tensor([1, 2, 5, 4, 6, 7, 0, 8, 3, 3])
    s3 = torch.tensor([1, 2, 5, 4, 6, 7, 7, 8, 3, 3])
    fresh = remasked_canvas(prompt_canvas, [s1, s2, s3], 2, 8, 3, 5, m)
    assert fresh.tolist() == [1, 2, m, m, m, m, m, m, m, m]
    kept = remasked_canvas(prompt_canvas, [s1, s2, s3], 2, 8, 4, 5, m)
    assert kept.tolist() == [1, 2, 5, m, 6, 7, m, 8, m, m]


@pytest.mark.parametrize("answers, total, stop", [
    (["4", "4"], 5, True),             # unanimous with 2 >= floor(5/2)
    (["4", "5"], 5, False),
    (["4", "5", "4"], 5, False),       # 2 votes, not unanimous, not > 2
    (["4", "5", "4", "4"], 5, True),   # 3 > 2
    ([None, None], 5, False),          # no valid answer: keep sampling
    (["4", None], 5, False),           # unanimous among valid answers but 1 < 2
    (["4", "4"], 4, True),
])
def test_stop_rule_by_hand(answers, total, stop):
    assert should_stop(answers, total) is stop


def test_answer_pattern_votes_on_the_match(tiny_bert):
    """With an answer pattern, samples whose texts differ but whose matches agree count as one answer."""
    sampler = build_sampler("dvoting", answer_pattern=r"(\d)")
    assert sampler._answer(_Facade(tiny_bert), torch.tensor(encode(tiny_bert, "ab7c"))) == "7"
    assert sampler._answer(_Facade(tiny_bert), torch.tensor(encode(tiny_bert, "abc"))) is None


class _Facade:
    def __init__(self, denoiser):
        self.tokenizer = denoiser.tokenizer


@pytest.mark.parametrize("params, message", [
    ({"samples": 0}, "samples=0"), ({"entropy_threshold": -1.0}, "entropy_threshold=-1.0"),
    ({"token_temperature": -0.5}, "token_temperature=-0.5"), ({"answer_pattern": "("}, "answer_pattern='('"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build_sampler("dvoting", **params)


def test_dvoting_appears_in_a_sweep_with_its_knob(tmp_path):
    """Its knob is declared by the class (nothing in harness/ names it): the decoders sweep lists it with a grid of
    `samples`, each run placed at its measured NFE."""
    cells = [c for c in plan_sweep(compose(["sweep=tiny_addition_decoders", f"output_dir={tmp_path}"]))
             if c.entry.name == "dvoting"]
    assert [(c.rule.adaptive, c.spec.sampler_params["samples"], c.budget) for c in cells] == [
        ("samples", 1, None), ("samples", 3, None), ("samples", 5, None)]


def test_dvoting_matches_the_reference_on_the_dream_stand_in(dream):  # noqa: F811
    """The same parity on the tiny Dream stand-in (remote code; its logit shift undone by the denoiser)."""
    decode = lambda ids: dream.tokenizer.decode(ids, skip_special_tokens=True).strip()  # noqa: E731
    for seed, prompt in enumerate(PROMPTS):
        [result] = run(dream, build_sampler("dvoting", samples=3, entropy_threshold=4.0, token_temperature=1.0),
                       [prompt], seeds=[seed], gen_length=16, steps=16, block_length=8)
        tokens, calls = dvoting_reference(reference_model(dream), encode(dream, prompt), dream.mask_id, 16, 8, 3, 4.0,
                                          1.0, torch.Generator().manual_seed(seed), decode)
        assert (result.tokens, result.nfe) == (tokens, calls)


def test_dvoting_completes_every_slot_on_the_llada_stand_in(llada):  # noqa: F811
    for seed, prompt in enumerate(PROMPTS):
        [result] = run(llada, build_sampler("dvoting", samples=3), [prompt], seeds=[seed], gen_length=16, steps=16,
                       block_length=8)
        assert llada.mask_id not in result.tokens and len(result.tokens) == 16
        assert 2 <= result.nfe == result.forwards and result.backwards == 0
