"""Analytic forward FLOPs (boe_eval.models.flops) against torch's own FlopCounterMode on the tiny models, with and
without head slicing, and the FLOPs that result rows carry."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from boe_eval.decoding import DecodeConfig, generate
from boe_eval.models.flops import flop_model
from boe_eval.models.loading import load_denoiser
from boe_eval.samplers import build_sampler
from fixtures.models import dream, dream_dir, llada, llada_dir, llada_moe, llada_moe_dir, mdlm, mdlm_dir  # noqa: F401


def _model(family, request):
    return load_denoiser("builtin:tiny_addition") if family == "builtin" else request.getfixturevalue(family)


def _counted(denoiser, length, logits_from):
    """FlopCounterMode's count of one forward (attention through the math kernel, which it decomposes into the
    matrix products it counts; the fused CPU kernel is not counted by torch)."""
    ids = torch.full((1, length), denoiser.mask_id)
    timestep = torch.tensor([0.5]) if denoiser.time_conditioned else None
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        denoiser.logits(ids, attention_mask=torch.ones_like(ids), timestep=timestep, logits_from=logits_from)
    return counter.get_total_flops()


@pytest.mark.parametrize("family", ["builtin", "llada", "dream", "mdlm", "llada_moe"])
@pytest.mark.parametrize("length,logits_from", [(20, 0), (20, 12), (33, 5)])
def test_analytic_flops_equal_the_flop_counter(family, length, logits_from, request):
    """(LLaDA-MoE: each token runs its top-k experts, so the experts count k x their size per position.)"""
    denoiser = _model(family, request)
    model = flop_model(denoiser)
    n = torch.tensor([length])
    analytic = float(model.forward_flops(n, n, denoiser.head_positions(n, logits_from))[0])
    counted = _counted(denoiser, length, logits_from)
    if family in ("dream", "llada_moe"):  # the rotary table is one more (tiny) matrix product: 2 x head_dim/2 FLOPs a position
        assert analytic == pytest.approx(counted, rel=1e-3)
    else:
        assert analytic == counted


def test_head_slicing_shows_in_the_flops(llada):  # noqa: F811
    """The head's share: 2 d V per position it runs on, so asking logits from position 12 of 20 saves 24 d V."""
    model = flop_model(llada)
    assert _counted(llada, 20, 0) - _counted(llada, 20, 12) == 2 * model.head * 12


def test_rows_carry_the_sum_of_their_calls_flops(llada):  # noqa: F811
    """Confidence: one forward per step over the whole row (prompt p + gen g tokens), head on the window (the
    generation region); BoE: its surrogate forward and the backward counted at backward_cost x that forward."""
    prompt = llada.tokenizer("12+34=", add_special_tokens=False)["input_ids"]
    p, g, steps = len(prompt), 8, 4
    model = flop_model(llada)
    per_call = float(model.forward_flops(torch.tensor([p + g]), torch.tensor([p + g]), torch.tensor([g]))[0])
    config = DecodeConfig(gen_length=g, steps=steps)
    [confidence] = generate(llada, [prompt], build_sampler("confidence"), config)
    assert confidence.forward_flops == confidence.flops == pytest.approx(steps * per_call)
    [boe] = generate(llada, [prompt], build_sampler("boe"), config)
    assert boe.forward_flops == pytest.approx(2 * steps * per_call)
    assert boe.flops == pytest.approx(2 * steps * per_call + 2.0 * steps * per_call)  # backward = 2 forwards
    [oracle] = generate(load_denoiser("oracle:sudoku4"), [[1, 2]], build_sampler("confidence"), config)
    assert oracle.flops is None  # no Linear layers: not countable, never guessed
