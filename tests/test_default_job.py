"""The default job: `boe-eval` with no sampler/sweep/model/task override runs the compute-matched sweep
configs/sweep/default.yaml; any of those overrides (or a layout override) keeps the one-job behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from boe_eval.harness.cli import CONFIG_DIR, with_default_job
from boe_eval.harness.sweep import plan_sweep

REPO = Path(__file__).resolve().parents[1]
MAIN_FAMILIES = {"confidence", "margin", "random", "eb", "klass", "boe", "lookum", "remdm_llada"}


@pytest.mark.parametrize("argv, expected", [
    ([], ["sweep=default"]),
    (["limit=5"], ["limit=5", "sweep=default"]),
    (["output_dir=/x", "batch_size=4"], ["output_dir=/x", "batch_size=4", "sweep=default"]),
    (["sampler=boe"], ["sampler=boe"]),
    (["sampler.params.rho=0.5", "sampler=boe"], ["sampler.params.rho=0.5", "sampler=boe"]),
    (["model=tiny_sudoku", "task=tiny_sudoku"], ["model=tiny_sudoku", "task=tiny_sudoku"]),
    (["sweep=tiny_sudoku_nfe"], ["sweep=tiny_sudoku_nfe"]),
    (["steps=16"], ["steps=16"]),
    (["gen_length=8", "block_length=8", "steps=4"], ["gen_length=8", "block_length=8", "steps=4"]),
    (["+task.limit=3", "task=tiny_addition"], ["+task.limit=3", "task=tiny_addition"]),
    (["-m", "sampler=confidence,margin"], ["-m", "sampler=confidence,margin"]),
    (["--help"], ["--help"]),
    (["--cfg", "job"], ["--cfg", "job"]),
])
def test_the_default_sweep_is_added_only_without_a_job_override(argv, expected):
    assert with_default_job(list(argv)) == expected


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_default_sweep_composes_on_the_shell_model_with_the_main_families_at_three_budgets():
    cfg = _compose(with_default_job(["output_dir=/tmp/unused"]))
    assert cfg.model.name == cfg.task.name == "tiny_shell"  # a converged ground where orders separate
    assert cfg.threads == 1  # measured: 29 s at one torch thread vs 6 min at torch's default on a shared 2-core CPU
    cells = plan_sweep(cfg)
    assert {c.entry.name for c in cells} == MAIN_FAMILIES
    budgets = {c.budget for c in cells if c.budget is not None}
    assert len(budgets) >= 3
    # compute-matched: each budgeted cell plans its budget's NFE within one step's cost (paper accounting)
    for c in cells:
        if c.budget is not None:
            assert abs(c.assignment.planned_cost - c.budget) <= c.assignment.step_cost
    # the one-job form composes the old way
    single = _compose(["sampler=boe"])
    assert single.sampler.name == "boe" and single.get("sweep") is None


@pytest.mark.slow
def test_boe_eval_without_arguments_runs_the_sweep_and_prints_table_and_plot(tmp_path):
    """The console script, with only a tiny limit and an output folder added (slow: ~1-4 min on a
    loaded 2-core box, 24 cells of 2 items)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([str(Path(sys.executable).parent / "boe-eval"), "limit=2", f"output_dir={tmp_path}",
                          f"hydra.run.dir={tmp_path / 'hydra'}", "+progress=false"],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| Method" in out.stdout and "| confidence" in out.stdout and "| lookum" in out.stdout
    assert f"Pareto plot: {tmp_path / 'pareto_nfe.png'}" in out.stdout
    assert (tmp_path / "pareto_nfe.png").exists()
