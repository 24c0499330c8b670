"""The committed sweeps on the built-in chain models (configs/sweep/tiny_chain_nfe.yaml, tiny_chain_controls.yaml, and
the shell game's tiny_shell_nfe.yaml, tiny_shell_controls.yaml, which share the 64-slot layout): the NFE sweep is
compute-matched, and the controls sweep runs every look-ahead sampler next to its controls at the steps BoE takes
in the NFE sweep, with the same prefilter, so that paired tests compare signals only."""

from __future__ import annotations

import pytest

from boe_eval.harness.cli import CONFIG_DIR
from boe_eval.harness.sweep import plan_sweep


#: ground -> (the NFE sweep's budgets, the controls sweep's steps = BoE's steps at some of those budgets)
GROUNDS = {"tiny_chain": ((16, 32, 48, 64), (16, 32)), "tiny_shell": ((8, 12, 16, 20, 24), (8, 10, 12))}


def _cells(name: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"sweep={name}", "output_dir=/tmp/unused"])
    assert cfg.model.name == cfg.task.name == name.rsplit("_", 1)[0]
    return plan_sweep(cfg)


@pytest.mark.parametrize("ground", GROUNDS)
def test_the_nfe_sweep_plans_every_budget_within_one_step_and_boe_at_half_the_steps(ground):
    cells = _cells(f"{ground}_nfe")
    budgeted = [c for c in cells if c.budget is not None]
    budgets = GROUNDS[ground][0]
    assert {c.budget for c in budgeted} == set(budgets)
    for c in budgeted:
        assert abs(c.assignment.planned_cost - c.budget) <= c.assignment.step_cost
    steps = {(c.entry.label, c.budget): c.spec.steps for c in budgeted}
    for b in budgets:
        assert steps[("confidence", b)] == b and steps[("boe", b)] == b // 2
        assert steps[("lookum", b)] == round(b / 3)  # k = 2: three NFE per step


@pytest.mark.parametrize("ground", GROUNDS)
def test_the_controls_share_the_method_s_steps_and_prefilter_and_change_only_the_signal(ground):
    controls = _cells(f"{ground}_controls")
    wanted = set(GROUNDS[ground][1])
    nfe_boe_steps = {c.spec.steps for c in _cells(f"{ground}_nfe") if c.entry.label == "boe"}
    assert {c.spec.steps for c in controls} == wanted and wanted <= nfe_boe_steps
    by = {(c.entry.label, c.spec.steps): c.spec.sampler_params for c in controls}
    for steps in wanted:
        boe = by[("boe", steps)]
        for label, signal in (("boe_control_random", "random"), ("boe_control_negated", "negated")):
            params = dict(by[(label, steps)])
            assert params.pop("signal") == signal and params == {k: v for k, v in boe.items() if k != "signal"}
        for label, write in (("boe_exact_relaxed", "relaxed"), ("boe_exact_hard", "hard")):
            exact = by[(label, steps)]
            assert exact["write"] == write and exact["rho"] == boe["rho"] and exact["objective"] == boe["objective"]
        lookum = by[("lookum", steps)]
        for label, signal in (("lookum_control_random", "random"), ("lookum_control_negated", "negated")):
            params = dict(by[(label, steps)])
            assert params.pop("signal") == signal and params == {k: v for k, v in lookum.items() if k != "signal"}
