"""Oracle denoisers (issue 14) against brute-force enumeration, and their gradients against finite differences."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from boe_eval.models.loading import load_denoiser
from boe_eval.oracles import hmm, sudoku4
from boe_eval.oracles.base import FREE, SEPARATOR
from boe_eval.samplers.boe import masked_entropy


@pytest.fixture(scope="module")
def oracles():
    return {name: load_denoiser(f"oracle:{name}") for name in ("hmm_random", "hmm_two_modes", "sudoku4")}


def brute_force_hmm(params, evidence):
    """p(x_t = s | e) and log sum_x p(x) prod e_t(x_t) by summing p(z, x) over every (z, x) pair."""
    start, trans, emit = (params[k].numpy() for k in ("start", "trans", "emit"))
    n, symbols = evidence.shape
    states = len(start)
    z = np.array(list(itertools.product(range(states), repeat=n)))  # [Z, n]
    x = np.array(list(itertools.product(range(symbols), repeat=n)))  # [X, n]
    pz = start[z[:, 0]] * np.prod([trans[z[:, t - 1], z[:, t]] for t in range(1, n)], axis=0)
    px_given_z = np.prod([emit[z[:, t]][:, x[:, t]] for t in range(n)], axis=0)  # [Z, X]
    px = pz @ px_given_z  # [X]
    weight = px * np.prod([evidence[t, x[:, t]] for t in range(n)], axis=0)
    marg = np.stack([np.stack([weight[x[:, t] == s].sum() for s in range(symbols)]) for t in range(n)])
    return marg / weight.sum(), math.log(weight.sum()), px, x


def soft_evidence(n, symbols, seed):
    rng = np.random.default_rng(seed)
    ev = rng.random((n, symbols))
    ev[0] = 0.0
    ev[0, 1] = 1.0  # one hard observation
    ev[2] = 1.0  # one free position
    return ev


@pytest.mark.parametrize("name,n", [("hmm_random", 4), ("hmm_two_modes", 5)])
def test_hmm_marginals_match_brute_force(oracles, name, n):
    oracle = oracles[name]
    params = {"start": oracle.start, "trans": oracle.trans, "emit": oracle.emit}
    for seed in range(3):
        ev = soft_evidence(n, len(oracle.symbols), seed)
        expected, log_z, _, _ = brute_force_hmm(params, ev)
        got = oracle.posterior(torch.tensor(ev)[None])[0].numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
        assert abs(float(oracle.log_evidence(torch.tensor(ev)[None])[0]) - log_z) < 1e-9


def canvas(oracle, template, written=None):
    """ids of `<template>=` followed by the slots: mask, or the written symbol."""
    vocab = oracle.tokenizer.get_vocab()
    ids = [vocab[ch] for ch in template] + [vocab[SEPARATOR]]
    for t in range(len(template)):
        ch = (written or {}).get(t)
        ids.append(vocab[ch] if ch else oracle.mask_id)
    return torch.tensor([ids])


def test_logits_through_the_contract_are_the_visible_conditionals(oracles):
    oracle = oracles["hmm_random"]
    params = {"start": oracle.start, "trans": oracle.trans, "emit": oracle.emit}
    template = "." + oracle.symbols[3] + ".."
    ids = canvas(oracle, template, written={3: oracle.symbols[7]})
    probs = torch.softmax(oracle.logits(ids), -1)[0].double()
    ev = np.ones((4, len(oracle.symbols)))
    ev[1] = np.eye(len(oracle.symbols))[3]
    ev[3] = np.eye(len(oracle.symbols))[7]
    expected, _, _, _ = brute_force_hmm(params, ev)
    sym = oracle.symbol_ids
    np.testing.assert_allclose(probs[5:9][:, sym].numpy(), expected, atol=1e-9)
    assert float(probs[5:9][:, sym].sum(-1).min()) > 1 - 1e-9  # forbidden tokens carry no mass


def test_sudoku_marginals_are_fractions_of_consistent_solutions(oracles):
    oracle = oracles["sudoku4"]
    grids = [g for g in itertools.product(range(4), repeat=4)]  # noqa: F841  (rows enumerated below)
    solutions = [tuple(s) for s in oracle.solutions.tolist()]
    assert len(solutions) == 288 == len(set(solutions))
    assert all(sudoku4.is_valid_grid(s) for s in solutions)
    rng = np.random.default_rng(0)
    ev = rng.random((16, 4))
    ev[[0, 5]] = 0
    ev[0, 2] = ev[5, 0] = 1.0
    weights = [np.prod([ev[j, s[j]] for j in range(16)]) for s in solutions]
    expected = np.zeros((16, 4))
    for s, w in zip(solutions, weights):
        for j in range(16):
            expected[j, s[j]] += w
    expected /= sum(weights)
    got = oracle.posterior(torch.tensor(ev)[None])[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # hard givens: exact fractions of the consistent grids
    template = "1" + FREE * 4 + "2" + FREE * 10
    consistent = [s for s in solutions if s[0] == 0 and s[5] == 1]
    probs = torch.softmax(oracle.logits(canvas(oracle, template)), -1)[0, 17:33][:, oracle.symbol_ids]
    for j in range(16):
        for v in range(4):
            assert abs(float(probs[j, v]) - sum(s[j] == v for s in consistent) / len(consistent)) < 1e-12


@pytest.mark.parametrize("name", ["hmm_random", "hmm_two_modes", "sudoku4"])
def test_logits_are_differentiable_in_the_input_embeddings(oracles, name):
    """autograd gradient of a masked-entropy objective (BoE's eq. 11) w.r.t. soft input embeddings = finite
    differences (torch.autograd.gradcheck, float64)."""
    oracle = oracles[name]
    n = 16 if name == "sudoku4" else 6
    template = oracle.symbols[0] + FREE * (n - 1)
    ids = canvas(oracle, template)
    base = oracle.embed(ids).detach()
    rng = torch.Generator().manual_seed(0)
    mix = torch.softmax(torch.randn(len(oracle.symbols), generator=rng, dtype=torch.float64), 0)
    soft = base.clone()
    slot = n + 1 + 2  # a generated slot, softly written: e_m + 0.4 (pi - e_m)
    soft[0, slot, oracle.mask_id] = 0.6
    soft[0, slot, oracle.symbol_ids] = 0.4 * mix
    positions = torch.zeros(1, ids.shape[1], dtype=torch.bool)
    positions[0, n + 1 :] = True

    def objective(slot_vector):
        """Entropy as a function of the soft slot's embedding (perturbations keep every factor positive, so the
        support does not change: entropy is smooth there; at a factor of exactly 0 it is not)."""
        embeds = torch.cat([soft[:, :slot], slot_vector[None, None], soft[:, slot + 1 :]], dim=1)
        return masked_entropy(oracle.logits(inputs_embeds=embeds), positions, oracle.forbidden_ids)

    vector = soft[0, slot].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(objective, (vector,), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert float(torch.autograd.grad(objective(vector).sum(), vector)[0].abs().max()) > 1e-4  # not trivially 0


@pytest.mark.parametrize("name", ["hmm_random", "hmm_two_modes"])
def test_viterbi_is_the_conditional_mode_and_log_probs_are_exact(oracles, name):
    oracle = oracles[name]
    params = {"start": oracle.start, "trans": oracle.trans, "emit": oracle.emit}
    n = 4 if name == "hmm_random" else 5
    template = FREE + oracle.symbols[1] + FREE * (n - 2)
    ev = oracle.hard_evidence(template)[0].numpy()
    _, log_z, px, xs = brute_force_hmm(params, ev)
    weight = px * np.prod([ev[t, xs[:, t]] for t in range(n)], axis=0)
    best = "".join(oracle.symbols[v] for v in xs[int(weight.argmax())])
    assert oracle.viterbi(template) == best
    for k in np.argsort(-weight)[:20]:
        seq = "".join(oracle.symbols[v] for v in xs[k])
        expected = math.log(weight[k]) - log_z if weight[k] > 0 else float("-inf")
        got = oracle.conditional_log_prob(template, seq)
        assert (got == expected == float("-inf")) or abs(got - expected) < 1e-9


def test_two_modes_parallel_marginal_argmax_is_impossible(oracles):
    """The hand-built instance: far from evidence, the argmax of the marginals of a pair is `ac` (probability 0)."""
    oracle = oracles["hmm_two_modes"]
    template = FREE * 8
    probs = torch.softmax(oracle.logits(canvas(oracle, template)), -1)[0, 9:17][:, oracle.symbol_ids]
    argmax = "".join(oracle.symbols[int(v)] for v in probs.argmax(-1))
    assert argmax == "acacacac"
    assert oracle.conditional_log_prob(template, argmax) == float("-inf")
    assert math.isfinite(oracle.conditional_log_prob(template, "abaacdcc"))


def test_oracle_loads_like_any_model_and_honours_the_padding_mask(oracles):
    for name, oracle in oracles.items():
        assert oracle.dtype == torch.float64
        assert oracle.honours_padding_mask
        assert oracle.describe()["model_family"] == "oracle"
    with pytest.raises(ValueError, match="oracle 'nope' does not exist"):
        load_denoiser("oracle:nope")


def test_random_hmm_is_sparse_and_every_symbol_names_one_state():
    params = hmm.random_hmm(seed=0)
    assert (params["trans"] > 0).sum(1).tolist() == [3] * 5
    assert ((params["emit"] > 0).sum(0) == 1).all()
    assert torch.allclose(params["trans"].sum(1), torch.ones(5, dtype=torch.float64))


def test_the_diffusion_time_is_accepted_and_ignored(oracles):
    oracle = oracles["hmm_two_modes"]
    assert oracle.time_conditioned
    ids = canvas(oracle, "a" + FREE * 5, written={3: "b"})
    plain = oracle.logits(ids)
    for t in (1e-5, 0.3, 1.0):
        assert torch.equal(oracle.logits(ids, timestep=torch.tensor([t])), plain)


@pytest.mark.parametrize("name", ["hmm_random", "hmm_two_modes", "sudoku4"])
def test_task_metrics_match_the_yaml_and_score_the_generating_sample_as_valid(name):
    import importlib.util
    import json as json_module

    import yaml

    from boe_eval.provenance import REPO_ROOT

    folder = REPO_ROOT / "tasks" / f"oracle_{name}"
    spec = importlib.util.spec_from_file_location(f"oracle_task_{name}", folder / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    declared = [m["metric"] for m in yaml.safe_load((folder / f"oracle_{name}.yaml").read_text().replace("!function", ""))["metric_list"]]
    doc = json_module.loads((folder / "data" / "test.jsonl").read_text().splitlines()[0])
    assert utils.doc_to_text(doc) == doc["template"] + "="
    good = utils.process_results(doc, [doc["sample"]])
    assert list(good) == declared and good["valid"] == 1.0 and good["log_prob"] <= 0
    if "mode_gap" in good:
        assert good["mode_gap"] >= 0
        best = utils.process_results(doc, [utils._task.oracle.mode(doc["template"])])
        assert best["mode_gap"] == 0.0 and best["mode_match"] == 1.0 and best["log_prob"] >= good["log_prob"]
    bad = utils.process_results(doc, ["x" * len(doc["sample"])])
    assert bad["valid"] == 0.0 and bad["log_prob"] == float("-inf")
