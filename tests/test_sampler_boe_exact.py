"""Exact-objective references for BoE (boe_eval/samplers/boe_exact.py, docs/samplers/boe_exact.md): each candidate's
drop of the surrogate masked entropy (eq. 11) by one metered forward, relaxed (eq. 10, 12 at alpha = 1) or hard.
Checked: a hand-computed case on a scripted denoiser, the drops against a brute-force recomputation with direct
forwards, the choice against an independent argmax, NFE = 1 + |C_t| per step as measured, determinism, configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from fixtures.models import mdlm_dir  # noqa: F401  (pytest fixture)

from boe_eval.decoding import ConfigError, DecodeConfig, generate
from boe_eval.harness.sweep import derive_steps
from boe_eval.models import load_denoiser
from boe_eval.models.denoiser import Denoiser
from boe_eval.samplers import build_sampler
from boe_eval.samplers.boe_exact import BoEExactConfig, BoEExactSampler
from conftest import sudoku_ids as _ids

CONFIGS = Path(__file__).resolve().parent.parent / "configs"




class Spy(BoEExactSampler):
    """The exact sampler, keeping every step's context, candidates, score parts and commit."""

    def start(self, batch_size, width, device):
        self.steps = getattr(self, "steps", [])

    def scores(self, ctx, candidates):
        parts = super().scores(ctx, candidates)
        self.steps.append({"ctx": ctx, "candidates": candidates, **parts})
        return parts

    def select(self, ctx):
        decision = super().select(ctx)
        self.steps[-1]["commit"] = decision.commit
        return decision


def _entropy_sum(logits, positions, forbidden):
    """sum over `positions` of the entropy over the allowed vocabulary (forbidden ids dropped), written independently."""
    keep = [i for i in range(logits.shape[-1]) if i not in set(forbidden)]
    log_probs = torch.log_softmax(logits[..., keep].double(), dim=-1)
    return float((-(log_probs.exp() * log_probs).sum(-1) * positions).sum())


# ------------------------------------------------------------------------------------------ hand-computed
class Scripted(Denoiser):
    """Three answer slots. Slot 0: a 0.9 / b 0.1; slot 1: a 0.8 / b 0.2; slot 2: a 0.5 / b 0.5, unless slot 1 is
    written (by a token or by any input embedding other than the mask's), which makes slot 2 a 0.99 / b 0.01.
    Writing slot 0 tells slot 2 nothing. Wraps the tiny BERT only for its tokenizer and embeddings."""

    def __init__(self, base: Denoiser, prompt_length: int) -> None:
        super().__init__(base.model, base.tokenizer, mask_id=base.mask_id, forbidden_ids=base.forbidden_ids)
        self.p = prompt_length
        self.a, self.b = (base.tokenizer.convert_tokens_to_ids(c) for c in "ab")

    def _forward(self, input_ids, inputs_embeds, attention_mask, timestep):
        if input_ids is not None:
            written = input_ids != self.mask_id
        else:
            mask = self.embed(torch.tensor([[self.mask_id]]))[0, 0]
            written = (inputs_embeds - mask).abs().sum(-1) > 0
        batch, width = written.shape
        logits = torch.zeros((batch, width, self.vocab_size))

        def put(slot, pa):
            row = torch.full((batch, self.vocab_size), -1e9)  # finite: entropies stay 0 * -1e9 = 0
            row[:, self.a], row[:, self.b] = math.log(pa), math.log(1 - pa)
            logits[:, self.p + slot] = row

        put(0, 0.9)
        put(1, 0.8)
        put(2, 0.5)
        sharp = written[:, self.p + 1]
        logits[sharp, self.p + 2, self.a] = math.log(0.99)
        logits[sharp, self.p + 2, self.b] = math.log(0.01)
        return logits


def _h(*ps):
    return -sum(p * math.log(p) for p in ps)


@pytest.mark.parametrize("write", ["relaxed", "hard"])
@pytest.mark.parametrize("gating", [False, True])
def test_hand_computed_exact_choice(tiny_bert, write, gating):
    """rho = 0.5: C_0 = {slot 0, slot 1} (confidence 0.9, 0.8), objective = {slot 2}. Exact drops: slot 0: 0,
    slot 1: H(.5,.5) - H(.99,.01) = 0.637 nats, so the exact sampler writes slot 1 first where confidence writes
    slot 0. NFE: 3 + 2 + 2 (1 + |C_t| with |C_t| = 2, 1, 1)."""
    prompt = tiny_bert.tokenizer.encode("xy=", add_special_tokens=False)
    denoiser = Scripted(tiny_bert, len(prompt))
    spy = Spy(BoEExactConfig(write=write, rho=0.5, gating=gating))
    # whole canvas: the slots are checked in canvas columns
    [result] = generate(denoiser, [prompt], spy,
                        DecodeConfig(gen_length=3, steps=3, record_trajectory=True, logits_window=False))
    first = spy.steps[0]
    assert first["candidates"][0, len(prompt):].tolist() == [True, True, False]
    assert float(first["drop"][0, len(prompt)]) == pytest.approx(0.0, abs=1e-6)
    assert float(first["drop"][0, len(prompt) + 1]) == pytest.approx(_h(0.5, 0.5) - _h(0.99, 0.01), rel=1e-5)
    assert [step["committed"] for step in result.trajectory][0] == [1]
    assert (result.nfe, result.forwards, result.backwards) == (7, 7, 0)
    [confidence] = generate(denoiser, [prompt], build_sampler("confidence"),
                            DecodeConfig(gen_length=3, steps=3, record_trajectory=True))
    assert confidence.trajectory[0]["committed"] == [0]


# ------------------------------------------------------------------------------------------ brute force
@pytest.mark.parametrize("write", ["relaxed", "hard"])
@pytest.mark.parametrize("objective", ["remaining", "masked"])
def test_drops_equal_a_brute_force_recomputation(sudoku64, write, objective):
    """Every candidate of every step: dH~(i) = H~(x_t) - H~(x_t with i written) recomputed with direct (unmetered)
    forwards of the denoiser, one state at a time, and an independent entropy."""
    spy = Spy(BoEExactConfig(write=write, rho=0.5, objective=objective))
    # whole canvas: recomputed with the raw denoiser on ctx.x
    generate(sudoku64, _ids(sudoku64), spy, DecodeConfig(gen_length=16, steps=8, logits_window=False))
    embedding = sudoku64.embedding_matrix.detach()
    forbidden = sudoku64.forbidden_ids
    checked = nonzero = 0
    for step in spy.steps[:4]:
        ctx, cand = step["ctx"], step["candidates"]
        positions = ctx.masked & ~cand if objective == "remaining" else ctx.masked
        for j in range(ctx.batch):
            ids, attention = ctx.x[j : j + 1], ctx.attention_mask[j : j + 1]
            with torch.no_grad():
                before = _entropy_sum(sudoku64.logits(ids, attention_mask=attention), positions[j], forbidden)
            probs = torch.softmax(ctx.logits[j].float(), dim=-1).double()
            for i in cand[j].nonzero().squeeze(1).tolist():
                with torch.no_grad():
                    if write == "hard":
                        moved = ids.clone()
                        moved[0, i] = ctx.x0[j, i]
                        logits = sudoku64.logits(moved, attention_mask=attention)
                    else:
                        inputs = sudoku64.embed(ids).clone()
                        inputs[0, i] = probs[i] @ embedding  # e_m -> E^T pi_i (eq. 10, eq. 12 at alpha = 1)
                        logits = sudoku64.logits(inputs_embeds=inputs, attention_mask=attention)
                after = _entropy_sum(logits, positions[j], forbidden)
                assert float(step["drop"][j, i]) == pytest.approx(before - after, rel=1e-5, abs=1e-8)
                checked += 1
                nonzero += abs(before - after) > 1e-4
            assert float(step["drop"][j][~cand[j]].abs().sum()) == 0
    assert checked >= 20 and nonzero >= 10


@pytest.mark.parametrize("write", ["relaxed", "hard"])
def test_choice_is_the_top_of_the_exact_score_and_cost_is_one_plus_candidates(sudoku64, write):
    """score = c_i dH~(i) - penalty (eq. 15, 19); the commit is its top-b_t within C_t (independent sort); measured
    NFE = forwards = sum over steps of (1 + |C_t|), no backward."""
    spy = Spy(BoEExactConfig(write=write, rho=0.5))
    results = generate(sudoku64, _ids(sudoku64), spy, DecodeConfig(gen_length=16, steps=8))
    declared = torch.zeros(len(results), dtype=torch.long)
    for step in spy.steps:
        ctx, cand = step["ctx"], step["candidates"]
        gate = (1 - ctx.entropy.double() / math.log(ctx.logits.shape[-1])).clamp(0, 1)
        torch.testing.assert_close(step["score"][cand], (gate * step["drop"] - step["penalty"])[cand])
        for j in range(ctx.batch):
            slots = cand[j].nonzero().squeeze(1).tolist()
            budget = min(int(ctx.budget[j]), len(slots))
            best = sorted(slots, key=lambda i: -float(step["score"][j, i]))[:budget]
            assert set(best) <= set(step["commit"][j].nonzero().squeeze(1).tolist())
        declared[ctx.rows.cpu()] += 1 + cand.sum(1).cpu()
    for result, nfe in zip(results, declared.tolist()):
        assert (result.nfe, result.forwards, result.backwards) == (nfe, nfe, 0)


def test_time_conditioned_cost_adds_the_baseline_forward(mdlm_dir):  # noqa: F811
    """On a time-conditioned denoiser the baseline H~_{t-1}(x_t) needs its own forward at t - 1: 2 + |C_t| per step."""
    denoiser = load_denoiser(mdlm_dir, dtype=torch.float64)
    spy = Spy(BoEExactConfig(rho=0.5))
    ids = [denoiser.tokenizer.encode(t, add_special_tokens=False) for t in ("ab=", "cd=")]
    results = generate(denoiser, ids, spy, DecodeConfig(gen_length=8, steps=4))
    declared = torch.zeros(2, dtype=torch.long)
    for step in spy.steps:
        declared[step["ctx"].rows.cpu()] += 2 + step["candidates"].sum(1).cpu()
    assert [(r.nfe, r.forwards, r.backwards) for r in results] == [(n, n, 0) for n in declared.tolist()]


def test_batch_and_seed_determinism(sudoku64):
    config = DecodeConfig(gen_length=16, steps=8)
    for write in ("relaxed", "hard"):
        together = generate(sudoku64, _ids(sudoku64), build_sampler("boe_exact", write=write), config, seeds=[1, 2, 3])
        again = generate(sudoku64, _ids(sudoku64), build_sampler("boe_exact", write=write), config, seeds=[1, 2, 3])
        alone = generate(sudoku64, _ids(sudoku64)[1:2], build_sampler("boe_exact", write=write), config, seeds=[2])
        assert [r.tokens for r in together] == [r.tokens for r in again]
        assert alone[0].tokens == together[1].tokens and alone[0].nfe == together[1].nfe


# ------------------------------------------------------------------------------------------ configs and input
def test_configs_compose_to_boe_defaults_with_the_write():
    from hydra import compose, initialize_config_dir

    boe = build_sampler("boe").params()
    with initialize_config_dir(str(CONFIGS / "sampler"), version_base=None):
        for name, write in (("boe_exact_relaxed", "relaxed"), ("boe_exact_hard", "hard")):
            cfg = compose(name)
            assert cfg.name == "boe_exact"
            params = build_sampler("boe_exact", **dict(cfg.params)).params()
            assert params == {**build_sampler("boe_exact").params(), "write": write}
            assert {k: v for k, v in params.items() if k != "write"} == {k: boe[k] for k in params if k != "write"}


def test_sweeps_place_it_on_the_steps_axis_only():
    assert derive_steps("boe_exact", {}, 6, "steps", 16, 16).steps == 6
    with pytest.raises(ConfigError, match="varies from step to step") as err:
        derive_steps("boe_exact", {}, 16, "nfe", 16, 16)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"write": "soft"}, "write='soft' is unknown: choose one of relaxed, hard"),
        ({"rho": 0}, "rho=0 is invalid: it must be a number in (0, 1]"),
        ({"objective": "all"}, "objective='all' is unknown"),
    ],
)
def test_bad_parameters_are_one_line_config_errors(params, message):
    with pytest.raises(ConfigError) as err:
        build_sampler("boe_exact", **params)
    assert message in str(err.value) and "\n" not in str(err.value)

