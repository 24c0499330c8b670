"""Decision diagnostics (issue 14): agreement with confidence, known degeneracies, writes undone."""

from __future__ import annotations

import pytest
import torch

from boe_eval.decoding.diagnostics import agreement_warning, decision_summary
from boe_eval.decoding.loop import DecodeConfig, generate
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.models.loading import load_denoiser
from boe_eval.samplers.base import Sampler, SamplerConfig, build_sampler, top_k_mask


@pytest.fixture(scope="module")
def hmm():
    return load_denoiser("oracle:hmm_random")


def prompt(oracle, template):
    vocab = oracle.tokenizer.get_vocab()
    return [vocab[ch] for ch in template + "="]


class LeastConfident(Sampler):
    """Commits the least confident eligible slots: differs from confidence whenever confidences are distinct."""

    name = "least_confident"

    def select(self, ctx: StepContext) -> StepDecision:
        return StepDecision(commit=top_k_mask(-ctx.confidence, ctx))


class RemaskFirstWrite(Sampler):
    """Confidence order, but at block step 2 turns the first written slot back into a mask (one write undone)."""

    name = "remask_first_write"

    def select(self, ctx: StepContext) -> StepDecision:
        commit = top_k_mask(ctx.confidence, ctx)
        remask = None
        if ctx.block_step == 2:
            remask = torch.zeros_like(commit)
            first = ctx.committed.float().argmax(1)
            remask[torch.arange(ctx.batch), first] = ctx.committed.any(1)
        return StepDecision(commit=commit, remask=remask)


def test_confidence_agrees_with_itself_and_the_forced_last_step_is_not_a_decision(hmm):
    template = "a" + "." * 7
    out = generate(hmm, [prompt(hmm, template)], build_sampler("confidence"), DecodeConfig(gen_length=8, steps=8))[0]
    assert out.decisions["decision_steps"] == 7  # 8 steps of one token; the last writes the only slot left
    assert out.decisions["decisions_differ"] == 0
    assert out.decisions["remasked"] == 0


def test_a_sampler_choosing_other_slots_differs_on_every_decision_step(hmm):
    template = "a" + "." * 7
    out = generate(hmm, [prompt(hmm, template)], LeastConfident(SamplerConfig()), DecodeConfig(gen_length=8, steps=8))[0]
    assert out.decisions["decision_steps"] == 7
    assert out.decisions["decisions_differ"] == 7
    assert out.decisions["degenerate_steps"] == 0 and out.decisions["degeneracy_cause"] is None


def test_remasked_writes_are_counted():
    oracle = load_denoiser("oracle:hmm_two_modes")
    out = generate(oracle, [prompt(oracle, "a" + "." * 7)], RemaskFirstWrite(SamplerConfig()), DecodeConfig(gen_length=8, steps=8))[0]
    assert out.decisions["remasked"] == 1


def test_boe_with_budget_at_least_its_candidate_set_is_flagged_degenerate(hmm):
    # 16 slots in 2 steps: b_t = 8 >= |C_t| = ceil(0.25 * 16) = 4 on the first step (the second is forced)
    cfg = DecodeConfig(gen_length=16, steps=2)
    out = generate(hmm, [prompt(hmm, "." * 16)], build_sampler("boe"), cfg)[0].decisions
    assert out["decision_steps"] == 1 and out["degenerate_steps"] == 1 and out["decisions_differ"] == 0
    # one token per step: b_t = 1 < |C_t| while at least 5 slots are masked
    out = generate(hmm, [prompt(hmm, "." * 16)], build_sampler("boe"), DecodeConfig(gen_length=16, steps=16))[0].decisions
    assert out["decision_steps"] == 15
    assert out["degenerate_steps"] == 3  # |M_t| = 4, 3, 2: ceil(0.25 |M_t|) = 1 = b_t


def test_lookum_with_budget_at_least_its_pool_is_flagged_degenerate(hmm):
    sampler = build_sampler("lookum", pool_size=3)
    out = generate(hmm, [prompt(hmm, "." * 16)], sampler, DecodeConfig(gen_length=16, steps=4))[0].decisions
    assert out["decision_steps"] == 3 and out["degenerate_steps"] == 3 and out["decisions_differ"] == 0


def _summary(sampler, rows, variant=None):
    return {"sampler": sampler, "variant": variant or sampler, **decision_summary(rows)}


def test_summary_pools_steps_and_warns_only_when_a_non_confidence_sampler_always_agrees():
    cause = "BoE's candidate set is no larger than b_t"
    rows = [
        {"decision_steps": 4, "decisions_differ": 1, "degenerate_steps": 0, "remasked": 2, "degeneracy_cause": None},
        {"decision_steps": 6, "decisions_differ": 0, "degenerate_steps": 6, "remasked": 0, "degeneracy_cause": cause},
    ]
    summary = decision_summary(rows)
    assert summary["agreement_with_confidence"] == pytest.approx(0.9)
    assert summary["agreement_per_sequence"] == pytest.approx((0.75 + 1.0) / 2)
    assert summary["degenerate_fraction"] == pytest.approx(0.6) and summary["remasked"] == 2
    assert agreement_warning(_summary("boe", rows)) is None  # 90% < 99%
    always = [dict(r, decisions_differ=0) for r in rows]
    warning = agreement_warning(_summary("boe", always, "boe_no_gating"))
    assert warning.startswith("warning: boe_no_gating made the same commits as confidence on 100.0% of 10")
    assert "on 60.0% of them " + cause in warning and "\n" not in warning
    assert agreement_warning(_summary("confidence", always)) is None
    unknown = [dict(r, degenerate_steps=0, degeneracy_cause=None) for r in always]
    assert "of them" not in agreement_warning(_summary("margin", unknown))
