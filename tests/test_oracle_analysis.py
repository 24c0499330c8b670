"""Paired tests, the oracle sweep summary and TIS against exact entropy drops on an oracle (issue 14)."""

from __future__ import annotations

import json

import pytest
import torch

from boe_eval.analysis.paired import paired_test
from boe_eval.analysis.tis_diagnostics import TISDiagnosticSampler, summarize
from boe_eval.decoding.loop import DecodeConfig, generate
from boe_eval.models.loading import load_denoiser
from boe_eval.samplers.boe import BoEConfig, masked_entropy


def test_mcnemar_exact_on_discordant_pairs():
    # 8 items only the sampler solves, 1 only the baseline, 3 both, 2 neither: p = 2 P(X >= 8 | 9, 1/2) = 20/512
    sampler = dict(enumerate([1] * 8 + [0] + [1] * 3 + [0] * 2))
    baseline = dict(enumerate([0] * 8 + [1] + [1] * 3 + [0] * 2))
    out = paired_test(sampler, baseline)
    assert out["test"] == "McNemar exact" and (out["wins"], out["losses"], out["n"]) == (8, 1, 14)
    assert out["p_value"] == pytest.approx(20 / 512)
    assert out["difference"] == pytest.approx(7 / 14)


def test_wilcoxon_on_continuous_scores_and_missing_items_are_dropped():
    sampler = {0: -1.0, 1: -2.0, 2: -3.0, 3: -4.0, 4: -5.0, 5: None}
    baseline = {0: -2.0, 1: -4.0, 2: -6.0, 3: -8.0, 4: -10.0, 5: -1.0, 6: 0.0}
    out = paired_test(sampler, baseline)
    assert out["test"] == "Wilcoxon signed-rank" and out["n"] == 5
    assert out["p_value"] == pytest.approx(2 / 32)  # all 5 differences positive: exact two-sided p = 2 / 2^5


def test_identical_scores_give_p_one():
    scores = {0: 1.0, 1: 0.0}
    assert paired_test(scores, scores)["p_value"] == 1.0


def _prompt(oracle, template):
    vocab = oracle.tokenizer.get_vocab()
    return [vocab[ch] for ch in template + "="]


def test_tis_is_the_exact_first_order_entropy_drop_and_hard_drops_are_exact():
    """On an oracle, TIS_i (eq. 14) = d/dalpha of the relaxed entropy drop at 0 (checked by a finite difference of
    the exact relaxed objective), and the recorded hard-write drop equals an independent re-evaluation."""
    oracle = load_denoiser("oracle:hmm_random")
    template = "a" + "." * 11
    sampler = TISDiagnosticSampler(BoEConfig(rho=0.5, aqa=False))
    sampler.hard_writes = True
    generate(oracle, [_prompt(oracle, template)], sampler, DecodeConfig(gen_length=12, steps=12))
    frame = sampler.frame()
    first = frame[frame["step"] == 0]
    assert len(first) == 6  # ceil(0.5 * 12) candidates
    ids = torch.tensor([_prompt(oracle, template) + [oracle.mask_id] * 12])
    base = oracle.embed(ids).detach()
    probs = torch.softmax(oracle.logits(ids), -1)[0]
    candidates = torch.zeros(1, ids.shape[1], dtype=torch.bool)
    candidates[0, 13 + first["position"].to_numpy()] = True
    objective = torch.zeros_like(candidates)
    objective[0, 13:] = True
    objective &= ~candidates
    with torch.no_grad():
        before = masked_entropy(oracle.logits(inputs_embeds=base), objective, oracle.forbidden_ids)
        for _, rec in first.iterrows():
            slot = 13 + int(rec["position"])
            alpha = 1e-6
            moved = base.clone()
            moved[0, slot] = base[0, slot] + alpha * (probs[slot] - base[0, slot])
            after = masked_entropy(oracle.logits(inputs_embeds=moved), objective, oracle.forbidden_ids)
            assert float(before - after) / alpha == pytest.approx(rec["tis"], rel=1e-4, abs=1e-7)
            written = ids.clone()
            written[0, slot] = int(probs[slot].argmax())
            hard = before - masked_entropy(oracle.logits(written), objective, oracle.forbidden_ids)
            assert float(hard) == pytest.approx(rec["hard_drop"], abs=1e-9)
    summary = summarize(frame, target="hard_drop")
    assert summary["candidates"] == len(frame) and -1 <= summary["pooled_spearman"] <= 1


def test_oracle_summary_pairs_each_sampler_with_confidence_at_the_same_budget(tmp_path):
    from boe_eval.analysis.oracle_summary import oracle_table
    from boe_eval.store import write_cell

    def cell(cid, variant, budget, scores, order):
        common = {"cell_id": cid, "variant": variant, "sampler": variant, "budget": budget, "steps": budget,
                  "sweep.order": order, "sweep.knob": "steps", "sweep.knob_value": budget}
        rows = [{"row_type": "example", **common, "doc_id": i, "score": s} for i, s in enumerate(scores)]
        rows.append({"row_type": "summary", **common, "score": sum(scores) / len(scores), "nfe": budget,
                     "agreement_with_confidence": 1.0 if variant == "confidence" else 0.5})
        write_cell(tmp_path, cid, rows)

    cell("c8", "confidence", 8, [0] * 10, 0)
    cell("c16", "confidence", 16, [1] * 10, 0)
    cell("b8", "boe", 8, [1] * 10, 1)
    cell("b16", "boe", 16, [1] * 10, 1)
    table, verdicts = oracle_table(tmp_path)
    boe = table[table["sampler"] == "boe"].set_index("budget")
    assert boe.loc["8", "wins/losses"] == "10/0" and boe.loc["16", "wins/losses"] == "0/0"
    assert boe.loc["8", "_p"] == pytest.approx(2 / 2**10)
    assert "better at 8 (+1.000, p=0.002)" in verdicts and "no significant difference at the other 1" in verdicts
