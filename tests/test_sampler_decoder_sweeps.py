"""The sweep configs that list the 2025-26 decoders (configs/sweep/paper_table2_decoders.yaml,
tiny_addition_decoders.yaml): the knob each decoder gets and the compute it plans, without running a model."""

from __future__ import annotations

import pytest
import torch

from boe_eval.harness.sweep import derive_steps, plan_sweep, read_sweep
from boe_eval.samplers import build_sampler
from test_sweep import compose


@pytest.mark.parametrize("sampler, params, budget, expected_steps", [
    ("prophet", {}, 12, 12),                               # one forward per step (it may stop early)
    ("info_gain", {"candidate_number": 2}, 12, 6),         # N look-ahead forwards per step
    ("info_gain", {"candidate_number": 8}, 48, 6),
])
def test_step_decoders_derive_their_steps_from_the_nfe_budget(sampler, params, budget, expected_steps):
    assert derive_steps(sampler, params, budget, "nfe", gen_length=12 if budget <= 12 else 48,
                        block_length=12 if budget <= 12 else 48).steps == expected_steps


@pytest.mark.parametrize("length", [128, 256])
def test_paper_table2_decoders_keeps_the_d1_protocol_and_adds_the_decoders(tiny_bert_dir, tmp_path, length):
    cells = plan_sweep(compose(["sweep=paper_table2_decoders", f"model.path={tiny_bert_dir}", "task=gsm8k",
                                f"gen_length={length}", f"output_dir={tmp_path}"]))
    by_label = {c.entry.label: c for c in cells}
    assert list(by_label)[:7] == ["confidence", "margin", "entropy", "pc_sampler", "remdm_llada", "lookum", "boe"]
    for label in ("confidence", "boe", "prophet", "info_gain"):
        assert by_label[label].spec.steps == length // 2  # T = L/2, fixed horizon
    assert list(by_label)[7:] == ["threshold", "factor", "prophet", "dus", "info_gain", "dvoting", "wino"]
    knobs = {label: by_label[label].spec.sampler_params for label in ("threshold", "factor", "dus", "dvoting", "wino")}
    assert knobs["threshold"]["threshold"] == 0.9 and knobs["factor"]["factor"] == 1.0 and knobs["dus"]["base"] == 2
    assert (knobs["wino"]["threshold"], knobs["wino"]["threshold_back"]) == (0.6, 0.9)
    assert knobs["dvoting"]["samples"] == 5
    assert build_sampler("dvoting", **knobs["dvoting"])._answer(_Tokenizer(), torch.tensor([0])) == "42"
    for cell in cells:
        assert (cell.spec.block_length, cell.spec.lm_eval_task, cell.spec.temperature) == (32, "gsm8k_d1", 0.0)


def test_tiny_addition_decoders_plans_every_knob(tmp_path):
    cfg = compose(["sweep=tiny_addition_decoders", f"output_dir={tmp_path}"])
    assert [e.label for e in read_sweep(cfg).samplers] == [
        "confidence", "eb", "boe", "threshold", "factor", "prophet", "dus", "info_gain", "info_gain_lookahead", "dvoting", "wino"]
    cells = plan_sweep(cfg)
    steps = {(c.entry.label, c.budget): c.spec.steps for c in cells if c.budget is not None}
    assert [steps[("boe", b)] for b in (3, 4, 6, 12)] == [1, 2, 3, 6]
    assert [steps[("info_gain", b)] for b in (3, 4, 6, 12)] == [1, 2, 3, 6]
    assert [steps[("prophet", b)] for b in (3, 4, 6, 12)] == [3, 4, 6, 12]
    grids = {}
    for c in cells:
        if c.budget is None:
            grids.setdefault(c.entry.label, []).append(c.spec.sampler_params[c.rule.adaptive])
    assert grids == {"eb": [0.0, 0.1, 0.5, 2.0], "threshold": [0.5, 0.7, 0.9, 0.99], "factor": [0.5, 1.0, 2.0, 4.0],
                     "dus": [2, 3, 12], "dvoting": [1, 3, 5],
                     "wino": [0.3, 0.6, 0.9]}


class _Tokenizer:
    """A stand-in facade whose decoded generation ends in the reference's GSM8K answer format."""

    class tokenizer:  # noqa: N801
        @staticmethod
        def decode(ids, skip_special_tokens=True):
            return "so 6 * 7 = 42. \\boxed{42}"
