"""The corrector baselines of TABES Table 4 (`fb`, `dfm`; docs/samplers/fb.md, docs/samplers/dfm.md): their step
probabilities and DFM's schedule by hand, and every decode against a straightforward restatement of
`kuleshov-group/remdm:diffusion.py` (`_ddpm_caching_update` with sampler=forward-backward, `_dfm_caching_update`) on
a tiny random BERT standing in for an MDLM (same tokens, same NFE)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import reference_samplers as ref

from boe_eval.decoding.loop import DecodeConfig, generate
from boe_eval.models.denoiser import Denoiser
from boe_eval.samplers import build_sampler
from boe_eval.samplers.dfm import dfm_schedule

PROMPTS = ["the cat sat", "2+2=", "xyz q"]


def mdlm_stand_in(base: Denoiser) -> Denoiser:
    """The tiny BERT declared time-conditioned (it ignores the timestep, like mdlm-owt)."""
    return Denoiser(base.model, base.tokenizer, mask_id=base.mask_id, forbidden_ids=base.forbidden_ids,
                    time_conditioned=True, name="tiny-mdlm-stand-in")


# ----------------------------------------------------------------------------- the restatement of the reference
def ref_fb_probabilities(t: float, dt: float) -> tuple[float, float]:
    """remdm `_ddpm_caching_update`, sampler == 'forward-backward': read off q_xs (written slot: mask weight sigma)
    and q_xs_2 (masked slot: token weight (alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t)); a categorical never
    picks a negative mask weight, so the unmask probability is at most 1."""
    alpha_t, alpha_s = 1 - t, 1 - (t - dt)
    sigma = (alpha_s - alpha_t) / alpha_t if alpha_t > 0 else 1
    token_weight = (alpha_s - (1 - sigma) * alpha_t) / (1 - alpha_t)
    return min(1.0, token_weight), sigma


def ref_dfm_loop(steps: int, eps: float = 1e-5):
    """remdm `_sample` with sampling.dfm: the (t, dt, unmask probability, remask probability) of every iteration;
    t is a float32 tensor in the reference (`timestep * torch.ones(...)`)."""
    outer_dt = (1 - eps) / steps
    timestep, out = 1.0, []
    while timestep > outer_dt:
        t = torch.tensor([timestep], dtype=torch.float32).item()
        at = 10 * t ** 0.25 * (1 - t) ** 0.25 + 1
        bt = at - 1
        dt = 1 / steps if t == 1 else min(1 / steps, 1 / (at / t + bt / (1 - t)))
        s = (torch.tensor([t], dtype=torch.float32) - dt).item()
        if t == 1:
            out.append((t, s, (t - s) / t, 0.0))  # q_xs = p_x0 (t - s), mask weight s: an MDLM step
        else:
            alpha_t, alpha_s = 1 - t, 1 - s
            coef1 = at * (alpha_s - alpha_t) / (1 - alpha_t)
            coef2 = 1 - bt * (alpha_s / alpha_t - 1)
            out.append((t, s, coef1, 1 - coef2))
        timestep = t - dt
    return out


def reference_decode(denoiser: Denoiser, prompt: list[int], gen_length: int, probabilities, generator, top_p=0.9):
    """One sequence through the reference's steps (remdm's loop, `reference_samplers.remdm_steps_reference`) with
    the corrector's per-step (unmask, remask) probabilities. Returns (generated tokens, NFE)."""
    forbidden = list(denoiser.forbidden_ids)

    def logits_of(x):
        with torch.no_grad():
            logits = denoiser.logits(x, attention_mask=torch.ones_like(x)).float()
        logits[..., forbidden] = float("-inf")
        return logits[0]

    return ref.remdm_steps_reference(logits_of, prompt, denoiser.mask_id, gen_length, probabilities, generator, top_p)


def encode(denoiser, text):
    return denoiser.tokenizer(text, add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------- hand-computed cases
@pytest.mark.parametrize("t, s, unmask, remask", [
    (1.0, 0.75, 0.25, 1.0),       # alpha_t = 0: sigma = 1, unmask alpha_s
    (0.75, 0.5, 2 / 3, 1.0),      # sigma = 0.25 / 0.25
    (0.5, 0.25, 1.0, 0.5),        # unmask 2 (t - s) / t = 1
    (0.08, 0.05, 0.75, 0.03 / 0.92),
    (0.1, 0.02, 1.0, 0.08 / 0.9),  # 2 (t - s) / t = 1.6, capped
])
def test_fb_step_probabilities_by_hand(t, s, unmask, remask):
    assert build_sampler("fb").transition(t, s) == pytest.approx((unmask, remask))


def test_dfm_schedule_by_hand():
    """S = 2: t = 1 -> 1/2 (an MDLM step), then a_t = 10 sqrt(1/2) + 1 and dt = (1/2) / (2 a_t - 1), after which
    t < (1 - eps)/2 stops the loop; at t = 1/2 the unmask and remask probabilities add up to 1."""
    a = 10 * math.sqrt(0.5) + 1
    dt = 0.5 / (2 * a - 1)
    schedule = dfm_schedule(2)
    assert len(schedule) == 2 and schedule[0] == (1.0, 0.5)
    assert schedule[1][0] == 0.5 and schedule[1][1] == pytest.approx(0.5 - dt, rel=1e-6)
    sampler = build_sampler("dfm")
    assert sampler.transition(1.0, 0.5) == pytest.approx((0.5, 0.0))
    unmask, remask = sampler.transition(*schedule[1])
    assert unmask == pytest.approx(a * 2 * dt, rel=1e-5) and remask == pytest.approx((a - 1) * 2 * dt, rel=1e-5)
    assert unmask + remask == pytest.approx(1.0, rel=1e-5)


def test_dfm_runs_more_iterations_than_planned_steps():
    for steps in (8, 32, 128):
        assert len(dfm_schedule(steps)) == len(ref_dfm_loop(steps)) > steps
    assert [len(dfm_schedule(s)) for s in (8, 16, 32, 64, 128)] == [29, 38, 46, 72, 133]


def test_schedules_equal_the_restatement():
    fb = build_sampler("fb")
    steps, dt = 40, (1 - 1e-5) / 40
    for i in range(steps):
        t, s = fb.times(i, steps)
        assert fb.transition(t, s) == pytest.approx(ref_fb_probabilities(t, dt))
    dfm = build_sampler("dfm")
    for (t, s), (rt, rs, unmask, remask) in zip(dfm_schedule(32), ref_dfm_loop(32)):
        assert (t, s) == pytest.approx((rt, rs), abs=1e-7)
        assert dfm.transition(t, s) == pytest.approx((unmask, remask), rel=1e-6, abs=1e-9)


# ----------------------------------------------------------------------------- parity with the reference
@pytest.mark.parametrize("name", ["fb", "dfm"])
@pytest.mark.parametrize("steps", [4, 12])
def test_decode_matches_the_restatement(tiny_bert, name, steps):
    """Same tokens and same NFE as the restated reference loop, per sequence of a batch."""
    model = mdlm_stand_in(tiny_bert)
    gen_length, seeds = 12, [5, 6, 7]
    results = generate(model, [encode(model, p) for p in PROMPTS], build_sampler(name),
                       DecodeConfig(gen_length=gen_length, steps=steps), seeds=seeds)
    if name == "fb":
        dt = (1 - 1e-5) / steps
        probabilities = [ref_fb_probabilities(1 - i * dt, dt) for i in range(steps)]
    else:
        probabilities = [(u, r) for _, _, u, r in ref_dfm_loop(steps)]
    for prompt, seed, result in zip(PROMPTS, seeds, results):
        tokens, calls = reference_decode(tiny_bert, encode(model, prompt), gen_length, probabilities,
                                         torch.Generator().manual_seed(seed))
        assert result.tokens == tokens and result.nfe == calls
        assert calls in (len(probabilities), len(probabilities) + 1)


def test_correctors_remask_written_tokens(tiny_bert):
    """Both correctors turn written tokens back into masks (what sets them apart from MDLM)."""
    for name in ("fb", "dfm"):
        sampler, remasked = build_sampler(name), []
        original = sampler.select

        def spy(ctx, original=original):
            decision = original(ctx)
            remasked.append(int(decision.remask.sum()) if decision.remask is not None else 0)
            return decision

        sampler.select = spy
        generate(mdlm_stand_in(tiny_bert), [encode(tiny_bert, p) for p in PROMPTS], sampler,
                 DecodeConfig(gen_length=16, steps=16), seeds=[1, 2, 3])
        assert sum(remasked) > 0, name


def test_correctors_refuse_a_model_without_the_mdlm_schedule(tiny_bert):
    from boe_eval.errors import ConfigError

    for name in ("fb", "dfm"):
        with pytest.raises(ConfigError, match="time-conditioned"):
            generate(tiny_bert, [encode(tiny_bert, "ab")], build_sampler(name), DecodeConfig(gen_length=4, steps=4))
    assert np.isfinite(build_sampler("dfm").transition(0.3, 0.29)).all()


def test_dfm_planned_steps_is_its_sweep_knob(tiny_bert):
    """With planned_steps = S the schedule is the reference's for S, whatever the loop's steps: NFE = its
    iterations (+1 noise removal when masks remain)."""
    model = mdlm_stand_in(tiny_bert)
    sampler = build_sampler("dfm", planned_steps=4)
    results = generate(model, [encode(model, p) for p in PROMPTS], sampler, DecodeConfig(gen_length=12, steps=12),
                       seeds=[1, 2, 3])
    assert all(r.nfe in (18, 19) for r in results) and len(dfm_schedule(4)) == 18
    from boe_eval.errors import ConfigError

    with pytest.raises(ConfigError, match="planned_steps="):
        build_sampler("dfm", planned_steps=0)
