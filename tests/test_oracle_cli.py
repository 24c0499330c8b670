"""End to end through the console script (issue 14 acceptance): an oracle model with its task and BoE; the
degeneracy warning on a built-in layout where BoE is confidence by construction, and none where it chooses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from boe_eval.store import read_rows

EXE = str(Path(sys.executable).with_name("boe-eval"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run(tmp_path, *overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return subprocess.run([EXE, *overrides, "+progress=false", "plot=false", f"output_dir={tmp_path}"],
                          capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600)


@pytest.mark.slow
def test_boe_runs_on_the_sequence_oracle_and_rows_carry_oracle_metrics(tmp_path):
    proc = run(tmp_path, "model=oracle_hmm_two_modes", "task=oracle_hmm_two_modes", "sampler=boe", "limit=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_rows(tmp_path)
    examples = [r for r in rows if r["row_type"] == "example"]
    assert len(examples) == 3 and all(r["model_family"] == "oracle" and r["dtype"] == "float64" for r in examples)
    assert all(r["metric.valid"] in (0.0, 1.0) and r["decision_steps"] > 0 for r in examples)
    assert all((r["metric.log_prob"] is None) == (r["metric.valid"] == 0.0) for r in examples)
    assert "agree w/ conf %" in proc.stdout


@pytest.mark.slow
def test_degenerate_boe_layout_warns_with_its_cause_and_a_choosing_layout_does_not(tmp_path):
    # tiny_sudoku in 3 steps: 5-6 tokens per step, |C_t| = ceil(0.25 * 16) = 4: BoE is confidence by construction
    proc = run(tmp_path / "a", "model=tiny_sudoku", "task=tiny_sudoku", "steps=3", "sampler=boe", "limit=20")
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("warning: boe")]
    assert len(warnings) == 1 and "on 100.0% of them BoE's candidate set" in warnings[0]
    # the default job's layout (tiny_addition, 12 slots in 6 steps): BoE's commits differ from confidence's
    proc = run(tmp_path / "b", "sampler=boe", "limit=20")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning:" not in proc.stdout
    summary = next(r for r in read_rows(tmp_path / "b") if r["row_type"] == "summary")
    assert summary["agreement_with_confidence"] < 0.99
