"""The committed sweeps on the built-in chain model (configs/sweep/tiny_chain_nfe.yaml, tiny_chain_controls.yaml):
the NFE sweep is compute-matched, and the controls sweep runs every look-ahead sampler next to its controls at
the steps BoE takes in the NFE sweep, with the same prefilter, so that paired tests compare signals only."""

from __future__ import annotations

from boe_eval.harness.cli import CONFIG_DIR
from boe_eval.harness.sweep import plan_sweep


def _cells(name: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"sweep={name}", "output_dir=/tmp/unused"])
    assert cfg.model.name == cfg.task.name == "tiny_chain"
    return plan_sweep(cfg)


def test_the_nfe_sweep_plans_every_budget_within_one_step_and_boe_at_half_the_steps():
    cells = _cells("tiny_chain_nfe")
    budgeted = [c for c in cells if c.budget is not None]
    assert {c.budget for c in budgeted} == {16, 32, 48, 64}
    for c in budgeted:
        assert abs(c.assignment.planned_cost - c.budget) <= c.assignment.step_cost
    steps = {(c.entry.label, c.budget): c.spec.steps for c in budgeted}
    for b in (16, 32, 48, 64):
        assert steps[("confidence", b)] == b and steps[("boe", b)] == b // 2
        assert steps[("lookum", b)] == round(b / 3)  # k = 2: three NFE per step


def test_the_controls_share_the_method_s_steps_and_prefilter_and_change_only_the_signal():
    controls = _cells("tiny_chain_controls")
    nfe_boe_steps = {c.spec.steps for c in _cells("tiny_chain_nfe") if c.entry.label == "boe" and c.budget in (32, 64)}
    assert {c.spec.steps for c in controls} == nfe_boe_steps == {16, 32}
    by = {(c.entry.label, c.spec.steps): c.spec.sampler_params for c in controls}
    for steps in (16, 32):
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
