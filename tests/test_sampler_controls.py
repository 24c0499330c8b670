"""Controls of the look-ahead samplers (docs/samplers/boe_controls.md, lookum_controls.md): the same prefilter,
steps and candidate sets with the signal replaced by a random choice (cheaper, metered as such) or by its negation
(same cost). Checked: the negated control's scores are minus the method's on the same state and it commits the
opposite end of the ranking; the random control commits only within C_t (or the pool), uniformly, at the declared
cost (the declared knob vs the meter); determinism under a seed; configs and bad input."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from boe_eval.decoding import ConfigError, DecodeConfig, generate
from boe_eval.harness.sweep import derive_steps, knob_rule
from boe_eval.samplers import build_sampler
from boe_eval.samplers.boe import BoEConfig, BoESampler, candidate_set
from boe_eval.samplers.lookum import LookumConfig, LookumSampler, mean_masked_entropy
from conftest import sudoku_ids as _ids

CONFIGS = Path(__file__).resolve().parent.parent / "configs"




class BoESpy(BoESampler):
    """BoE (any signal) that keeps every step's context, candidates, score parts and commit."""

    def start(self, batch_size, width, device):
        super().start(batch_size, width, device)
        self.steps = getattr(self, "steps", [])

    def scores(self, ctx, candidates):
        parts = super().scores(ctx, candidates)
        self.steps[-1].update(parts)
        return parts

    def select(self, ctx):
        self.steps.append({"ctx": ctx, "candidates": candidate_set(ctx, self.config.rho)})
        decision = super().select(ctx)
        self.steps[-1]["commit"] = decision.commit
        return decision


def _first_row(ctx):
    """The step context of the first row alone (its generators are set by the caller)."""
    fields = ("x", "attention_mask", "masked", "eligible", "committed", "gen_start", "block_start", "block_end",
              "logits", "x0", "suppressed", "budget", "rows")
    return dataclasses.replace(ctx, **{name: getattr(ctx, name)[:1] for name in fields})


def _boe_spy(denoiser, seeds=None, gen_length=16, steps=8, **params):
    spy = BoESpy(BoEConfig(**params))
    spy.config.validate()
    results = generate(denoiser, _ids(denoiser), spy, DecodeConfig(gen_length=gen_length, steps=steps), seeds=seeds)
    return spy, results


# ------------------------------------------------------------------------------------------ BoE, negated
@pytest.mark.parametrize("gating", [True, False])
def test_boe_negated_scores_are_minus_the_methods_and_commit_the_bottom_of_its_ranking(sudoku64, gating):
    """On every state the negated control visits, the method's own scores (recomputed by a plain BoE on that state)
    are exactly minus the control's (penalty off), and the control commits the b_t lowest-scored candidates."""
    spy, _ = _boe_spy(sudoku64, rho=0.5, signal="negated", anti_collapse=False, gating=gating, aqa=False)
    method = BoESampler(BoEConfig(rho=0.5, anti_collapse=False, gating=gating, aqa=False))
    informative = 0
    for step in spy.steps:
        ctx, cand = step["ctx"], step["candidates"]
        parts = method.scores(ctx, cand)
        torch.testing.assert_close(step["tis"], parts["tis"], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(step["score"], -parts["score"], rtol=1e-9, atol=1e-12)
        for j in range(ctx.batch):
            slots = cand[j].nonzero().squeeze(1).tolist()
            budget = min(int(ctx.budget[j]), len(slots))
            by_method = sorted(slots, key=lambda i: float(parts["score"][j, i]))  # ascending: worst first
            chosen = set(step["commit"][j].nonzero().squeeze(1).tolist()) & set(slots)
            assert chosen == set(by_method[:budget])
            if budget < len(slots) and float(parts["score"][j, by_method[-1]] - parts["score"][j, by_method[0]]) > 1e-6:
                best = set(sorted(slots, key=lambda i: -float(parts["score"][j, i]))[:budget])
                assert chosen != best
                informative += 1
    assert informative >= 5


def test_boe_negated_keeps_gate_and_penalty(sudoku64):
    """score = c_i (-TIS_i) - lambda [h_t - H_i]_+^2 (eq. 15, 19 with the sign of eq. 14 flipped), at the same cost."""
    spy, results = _boe_spy(sudoku64, rho=0.5, signal="negated", anti_collapse_weight=50.0, h_max=2.0)
    for step in spy.steps:
        cand = step["candidates"]
        expected = step["gate"] * -step["tis"] - step["penalty"]
        torch.testing.assert_close(step["score"][cand], expected[cand])
    assert any(float(s["penalty"].max()) > 0 for s in spy.steps)
    for result in results:
        assert (result.nfe, result.forwards, result.backwards) == (16, 16, 8)


# ------------------------------------------------------------------------------------------ BoE, random
def test_boe_random_commits_only_within_the_prefilter_without_surrogate(sudoku64):
    spy, results = _boe_spy(sudoku64, rho=0.25, signal="random")
    assert len(spy.steps) == 8 and all("tis" not in step for step in spy.steps)  # no surrogate, no backward
    for step in spy.steps:
        ctx, cand, commit = step["ctx"], step["candidates"], step["commit"]
        for j in range(ctx.batch):
            if int(cand[j].sum()) >= int(ctx.budget[j]):  # enough candidates: all b_t writes inside C_t
                assert bool((commit[j] <= cand[j]).all()) and int(commit[j].sum()) == int(ctx.budget[j])
            else:  # Alg. 1 line 9: all of C_t, the rest by confidence
                assert bool((cand[j] <= commit[j]).all())
        # C_t is BoE's prefilter: the ceil(rho |M_t|) most confident eligible slots
        for j in range(ctx.batch):
            size = math.ceil(0.25 * int(ctx.eligible[j].sum()))
            conf = torch.where(ctx.eligible[j], ctx.confidence[j].double(), -1.0)
            assert set(cand[j].nonzero().squeeze(1).tolist()) == set(conf.topk(size).indices.tolist())
    for result in results:
        assert (result.nfe, result.forwards, result.backwards) == (8, 8, 0)
        assert sudoku64.mask_id not in result.tokens


def test_boe_random_is_uniform_within_the_prefilter(sudoku64):
    """Each b_t-subset of C_t is equally likely: with |C_t| = 4 and b_t = 2, each slot is committed in half of 4000
    independent draws (binomial sd ~ 32, tolerance 5 sd) and each of the 6 pairs in a sixth of them."""
    spy, _ = _boe_spy(sudoku64, rho=0.25, signal="random", steps=8)
    ctx = spy.steps[0]["ctx"]  # 16 masked slots: b_t = 2, |C_t| = 4
    ctx = _first_row(ctx)
    sampler = build_sampler("boe", rho=0.25, signal="random")
    cand = candidate_set(ctx, 0.25)[0]
    assert int(cand.sum()) == 4 and int(ctx.budget[0]) == 2
    draws = 4000
    slot_counts, pair_counts = torch.zeros(ctx.x.shape[1]), {}
    generator = torch.Generator().manual_seed(0)
    for _ in range(draws):
        commit = sampler.select(dataclasses.replace(ctx, generators=[generator])).commit[0]
        slot_counts += commit.double()
        pair = tuple(commit.nonzero().squeeze(1).tolist())
        pair_counts[pair] = pair_counts.get(pair, 0) + 1
    assert float(slot_counts[~cand].sum()) == 0
    half, sd = draws / 2, math.sqrt(draws / 4)
    assert all(abs(float(c) - half) < 5 * sd for c in slot_counts[cand])
    sixth, sd6 = draws / 6, math.sqrt(draws * (1 / 6) * (5 / 6))
    assert len(pair_counts) == 6 and all(abs(c - sixth) < 5 * sd6 for c in pair_counts.values())


def test_boe_random_is_deterministic_under_a_seed_and_independent_of_the_batch(sudoku64):
    config = DecodeConfig(gen_length=16, steps=8)
    prompts = _ids(sudoku64)
    first = generate(sudoku64, prompts, build_sampler("boe", signal="random"), config, seeds=[1, 2, 3])
    again = generate(sudoku64, prompts, build_sampler("boe", signal="random"), config, seeds=[1, 2, 3])
    alone = generate(sudoku64, prompts[1:2], build_sampler("boe", signal="random"), config, seeds=[2])
    assert [r.tokens for r in first] == [r.tokens for r in again]
    assert alone[0].tokens == first[1].tokens
    record = DecodeConfig(gen_length=16, steps=8, record_trajectory=True)
    orders = {tuple(tuple(s["committed"]) for s in generate(sudoku64, prompts[:1], build_sampler("boe", signal="random"),
                                                           record, seeds=[seed])[0].trajectory) for seed in range(6)}
    assert len(orders) > 1  # the seed does change the draws


# ------------------------------------------------------------------------------------------ LookUM
class LookumSpy(LookumSampler):
    def start(self, batch_size, width, device):
        self.steps = getattr(self, "steps", [])

    def candidate_sets(self, ctx):
        sets = super().candidate_sets(ctx)
        self.steps.append({"ctx": ctx, "sets": sets})
        return sets

    def select(self, ctx):
        decision = super().select(ctx)
        self.steps[-1]["commit"] = decision.commit
        return decision


def test_lookum_negated_keeps_the_most_uncertain_lookahead(sudoku64):
    """At a near-zero temperature the negated control keeps the candidate whose look-ahead has the HIGHEST mean
    masked entropy, recomputed here with direct forwards (the method keeps the lowest)."""
    spy = LookumSpy(LookumConfig(k=3, selection_temperature=1e-9, signal="negated"))
    config = DecodeConfig(gen_length=16, steps=8, logits_window=False)  # whole canvas: the raw model re-checks ctx.x
    results = generate(sudoku64, _ids(sudoku64), spy, config, seeds=[4, 5, 6])
    distinct = 0
    for step in spy.steps:
        ctx = step["ctx"]
        for j in range(ctx.batch):
            uncertainty = []
            for candidate in step["sets"]:
                x = torch.where(candidate[j : j + 1], ctx.x0[j : j + 1], ctx.x[j : j + 1])
                with torch.no_grad():
                    logits = sudoku64.logits(x, attention_mask=ctx.attention_mask[j : j + 1]).float()
                logits[..., list(sudoku64.forbidden_ids)] = float("-inf")
                uncertainty.append(float(mean_masked_entropy(logits, ctx.masked[j : j + 1] & ~candidate[j : j + 1])))
            if max(uncertainty) - min(uncertainty) < 1e-4:
                continue  # a tie (identical sets): either choice is right
            worst = max(range(len(uncertainty)), key=uncertainty.__getitem__)
            assert torch.equal(step["commit"][j], step["sets"][worst][j])
            distinct += 1
    assert distinct >= 5
    for result in results:
        assert (result.nfe, result.forwards, result.backwards) == (32, 32, 0)


def test_lookum_random_draws_the_same_sets_and_keeps_one_without_verifying(sudoku64):
    """The random control draws LookUM's k sets from the pool (the same generator draws) and keeps one of them, with
    no look-ahead forward: NFE = forwards = steps; on a fixed state each of k = 2 sets is kept about half the time."""
    spy = LookumSpy(LookumConfig(k=2, signal="random"))
    results = generate(sudoku64, _ids(sudoku64), spy, DecodeConfig(gen_length=16, steps=8), seeds=[4, 5, 6])
    for result in results:
        assert (result.nfe, result.forwards, result.backwards) == (8, 8, 0)
    for step in spy.steps:
        ctx = step["ctx"]
        for j in range(ctx.batch):
            assert any(torch.equal(step["commit"][j], s[j]) for s in step["sets"])
            pool = torch.where(ctx.eligible[j], ctx.confidence[j].double(), -1.0).topk(
                min(max(5, int(ctx.budget[j])), int(ctx.eligible[j].sum()))).indices.tolist()
            assert set(step["commit"][j].nonzero().squeeze(1).tolist()) <= set(pool)
    # same state, same generator state: the control's sets are the method's sets
    ctx = spy.steps[0]["ctx"]
    method, control = LookumSampler(LookumConfig(k=2)), LookumSampler(LookumConfig(k=2, signal="random"))
    sets_m, sets_c = (
        sampler.candidate_sets(dataclasses.replace(ctx, generators=[torch.Generator().manual_seed(s) for s in (7, 8, 9)]))
        for sampler in (method, control)
    )
    assert all(torch.equal(a, b) for a, b in zip(sets_m, sets_c))
    # uniform choice between the k = 2 sets (where they differ)
    generator = torch.Generator().manual_seed(0)
    single = _first_row(ctx)
    first, differ, draws = 0, 0, 2000
    for _ in range(draws):
        state = generator.get_state()
        sets = control.candidate_sets(dataclasses.replace(single, generators=[generator]))
        generator.set_state(state)
        commit = control.select(dataclasses.replace(single, generators=[generator])).commit
        if not torch.equal(sets[0], sets[1]):
            differ += 1
            first += int(torch.equal(commit, sets[0]))
    assert differ > 1000 and abs(first - differ / 2) < 5 * math.sqrt(differ / 4)


def test_lookum_controls_are_deterministic_under_a_seed(sudoku64):
    config = DecodeConfig(gen_length=16, steps=8)
    for signal in ("random", "negated"):
        runs = [generate(sudoku64, _ids(sudoku64), build_sampler("lookum", signal=signal), config, seeds=[1, 2, 3])
                for _ in range(2)]
        assert [r.tokens for r in runs[0]] == [r.tokens for r in runs[1]]


# ------------------------------------------------------------------------------------------ declared cost = measured
@pytest.mark.parametrize(
    "config_name, per_step",
    [
        ("boe", (2, 2, 1)),
        ("boe_control_negated", (2, 2, 1)),
        ("boe_control_random", (1, 1, 0)),
        ("lookum", (3, 3, 0)),
        ("lookum_control_negated", (3, 3, 0)),
        ("lookum_control_random", (1, 1, 0)),
    ],
)
def test_declared_cost_equals_the_meter(sudoku64, config_name, per_step):
    """The declared step cost (`Sampler.knob`) (what a compute-matched sweep plans with) equals the measured NFE, forwards and
    backwards per step, and a 16-NFE budget gives the steps that spend it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIGS / "sampler"), version_base=None):
        cfg = compose(config_name)
    sampler = build_sampler(cfg.name, **dict(cfg.params))
    cost = knob_rule(cfg.name).step_cost(sampler.params())
    forwards = cost.nfe if cost.forwards is None else cost.forwards
    assert (cost.nfe, forwards, cost.backwards) == per_step
    steps = derive_steps(cfg.name, sampler.params(), 16, "nfe", 16, 16).steps
    assert steps == 16 // per_step[0]
    results = generate(sudoku64, _ids(sudoku64), sampler, DecodeConfig(gen_length=16, steps=steps), seeds=[1, 2, 3])
    for result in results:
        assert (result.nfe, result.forwards, result.backwards) == tuple(steps * c for c in per_step)


# ------------------------------------------------------------------------------------------ configs and input
def test_control_configs_compose_and_leave_the_methods_unchanged():
    from hydra import compose, initialize_config_dir

    expected = {
        "boe_control_random": ("boe", {"signal": "random"}),
        "boe_control_negated": ("boe", {"signal": "negated"}),
        "lookum_control_random": ("lookum", {"signal": "random"}),
        "lookum_control_negated": ("lookum", {"signal": "negated"}),
    }
    with initialize_config_dir(str(CONFIGS / "sampler"), version_base=None):
        for name, (registered, change) in expected.items():
            cfg = compose(name)
            assert cfg.name == registered
            defaults = build_sampler(registered).params()
            assert build_sampler(registered, **dict(cfg.params)).params() == {**defaults, **change}
    # the methods' rows and cell ids are unchanged: `signal` appears only for a control
    assert "signal" not in build_sampler("boe").params() and "signal" not in build_sampler("lookum").params()
    assert build_sampler("boe", signal="tis").params() == build_sampler("boe").params()


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("boe", {"signal": "shuffled"}, "signal='shuffled' is unknown: choose one of tis, negated, random"),
        ("boe", {"signal": "random", "fuse_forward": True}, "fuse_forward=true with signal='random' has nothing to fuse"),
        ("lookum", {"signal": "tis"}, "signal='tis' is unknown: choose one of verifier, negated, random"),
    ],
)
def test_bad_signals_are_one_line_config_errors(name, params, message):
    with pytest.raises(ConfigError) as err:
        build_sampler(name, **params)
    assert message in str(err.value) and "\n" not in str(err.value)
