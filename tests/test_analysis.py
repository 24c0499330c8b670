"""boe-report: loading rows, confidence intervals, Pareto frontier, paper tables, plots."""

from __future__ import annotations

import itertools
import math
import random

import pandas as pd
import pytest

from boe_eval.analysis.intervals import accuracy_ci, bootstrap_ci, wilson_ci
from boe_eval.analysis.load import load_results
from boe_eval.analysis.plots import pareto_mask
from boe_eval.analysis.report import main as report_main
from boe_eval.analysis.tables import ablation_table, budget_table, paper_table, pick_at_budget, rank_marks
from boe_eval.store import cell_id, write_cell


def write_fake_cell(results_dir, *, variant, budget, scores, nfe, task="gsm8k", gen_length=128, seed=0,
                    placement="budget", knob_value=None, sampler=None, wall=10.0, backwards=0.0):
    """Rows shaped like run_sweep's output (example rows + one summary row), for analysis tests."""
    common = {"model": "m", "task": task, "gen_length": gen_length, "block_length": 32, "temperature": 0.0,
              "early_stop": False, "variant": variant, "sampler": sampler or variant, "budget_axis": "nfe",
              "budget": budget, "steps": int(nfe), "seed": seed, "primary_metric": "acc",
              "sweep.placement": placement, "sweep.knob": "gamma" if placement == "measured" else "steps",
              "sweep.knob_value": knob_value if knob_value is not None else int(nfe),
              "sweep.within_one_step": True if placement == "budget" else None}
    cid = cell_id({k: common[k] for k in ("variant", "budget", "task", "gen_length", "seed", "sweep.knob_value")})
    rows = [{"row_type": "example", **common, "cell_id": cid, "lm_eval_subtask": task, "doc_id": i, "score": s,
             "nfe": nfe} for i, s in enumerate(scores)]
    rows.append({"row_type": "summary", **common, "cell_id": cid, "n_examples": len(scores),
                 "score": sum(scores) / len(scores), "nfe": nfe, "nfe_to_stop": nfe / 2, "forwards": nfe,
                 "backwards": backwards, "forward_equivalents": nfe + 2 * backwards, "wall_time_s": wall})
    write_cell(results_dir, cid, rows)
    return cid


# ----------------------------------------------------------------------------------- intervals
def test_wilson_interval_matches_the_closed_form():
    for k, n in [(0, 5), (3, 10), (17, 20), (50, 50)]:
        z = 1.959963984540054
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        lo, hi = wilson_ci(k, n)
        assert lo == pytest.approx(max(0.0, centre - half), abs=1e-9)
        assert hi == pytest.approx(min(1.0, centre + half), abs=1e-9)


def test_fractional_scores_get_a_reproducible_bootstrap_interval():
    rng = random.Random(3)
    data = [rng.random() for _ in range(40)]
    mean, lo, hi, method = accuracy_ci(data)
    assert method == "bootstrap" and mean == pytest.approx(sum(data) / 40)
    assert lo < mean < hi
    # the interval is about two standard errors wide on each side
    se = (sum((x - mean) ** 2 for x in data) / 39) ** 0.5 / 40**0.5
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.25)
    assert bootstrap_ci(data) == (lo, hi)
    assert accuracy_ci([1.0, 0.0, 1.0])[3] == "wilson"
    assert accuracy_ci([0.5, 0.5])[1:3] == (0.5, 0.5)


# ----------------------------------------------------------------------------------- frontier
def test_pareto_mask_equals_a_brute_force_definition():
    rng = random.Random(0)
    for _ in range(20):
        pts = [(rng.choice([8, 16, 32, 64]), rng.choice([0.1, 0.2, 0.3, 0.4])) for _ in range(9)]
        mask = pareto_mask([p[0] for p in pts], [p[1] for p in pts])
        for (x, y), on in zip(pts, mask):
            beaten = any(x2 <= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in pts)
            assert on == (not beaten)
    assert pareto_mask([1, 2, 3], [0.5, 0.4, 0.9]) == [True, False, True]
    assert pareto_mask([1, float("nan")], [0.1, 0.9]) == [True, False]


def test_rank_marks_bold_best_underline_second_with_ties():
    marks = rank_marks(pd.Series({"a": 0.50, "b": 0.70, "c": 0.70, "d": 0.60, "e": float("nan")}))
    assert marks.to_dict() == {"a": None, "b": "best", "c": "best", "d": "second", "e": None}


# ----------------------------------------------------------------------------------- tables
@pytest.fixture()
def sweep_dir(tmp_path):
    d = tmp_path / "res"
    # two fixed-cost samplers at budgets 32 / 64, on two lengths; an adaptive sampler at measured NFE
    for length, shift in ((128, 0), (256, 1)):
        write_fake_cell(d, variant="confidence", budget=32, scores=[1, 0, 0, 0], nfe=32, gen_length=length)
        write_fake_cell(d, variant="confidence", budget=64, scores=[1, 1, 0, 0], nfe=64, gen_length=length)
        write_fake_cell(d, variant="boe", budget=32, scores=[1, 1, 0, 0], nfe=32, gen_length=length, backwards=16)
        write_fake_cell(d, variant="boe", budget=64, scores=[1, 1, 1, shift], nfe=64, gen_length=length,
                        backwards=32)
        write_fake_cell(d, variant="eb", budget=None, scores=[1, 0, 0, 0], nfe=20.5, placement="measured",
                        knob_value=0.1, gen_length=length)
        write_fake_cell(d, variant="eb", budget=None, scores=[1, 1, 1, 1], nfe=60.0, placement="measured",
                        knob_value=1.0, gen_length=length)
    return d


def test_paper_table_layout_marks_and_intervals(sweep_dir):
    points = load_results(sweep_dir)
    md = paper_table(points)
    header = [line for line in md.splitlines() if line.startswith("| Method")][0]
    assert "gsm8k L=128 (64 NFE)" in header and "gsm8k L=256 (64 NFE)" in header
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Method")}
    lo, hi = wilson_ci(3, 4)
    # L=128: eb (4/4 at 60 NFE <= 64) best, boe (3/4) second, confidence (2/4) unmarked
    assert rows["eb"][0].startswith("**100.0**") and "@60 NFE" in rows["eb"][0]
    assert rows["boe"][0] == f"<u>75.0</u> ({100 * lo:.1f}–{100 * hi:.1f})"
    assert rows["confidence"][0].startswith("50.0 (")
    # L=256: boe 4/4 ties eb 4/4 -> both bold
    assert rows["boe"][1].startswith("**100.0**") and rows["eb"][1].startswith("**100.0**")
    tex = paper_table(points, style="tex")
    assert r"\textbf{100.0}" in tex and r"\underline{75.0}" in tex and r"\begin{tabular}" in tex


def test_budget_table_places_adaptive_runs_at_their_measured_compute(sweep_dir):
    points = load_results(sweep_dir)
    eb = points[(points["variant"] == "eb") & (points["gen_length"] == 128)]
    row, at = pick_at_budget(eb, 32, "nfe")
    assert at == 20.5 and row["score"] == 0.25  # the 60-NFE run does not fit a 32-NFE budget
    row, at = pick_at_budget(eb, 16, "nfe")
    assert row is None
    md = budget_table(points)
    headers = [line for line in md.splitlines() if line.startswith("| Method")]
    assert len(headers) == 2 and all("32 NFE" in h and "64 NFE" in h for h in headers)
    eb_line = [line for line in md.splitlines() if line.startswith("| eb")][0]
    assert "@20.5 NFE" in eb_line and "@60 NFE" in eb_line


def test_ablation_table_lists_variants_with_runtime(sweep_dir):
    points = load_results(sweep_dir)
    md = ablation_table(points[points["budget"] == 64])
    assert "Runtime (s)" in md and "| boe" in md and "gsm8k acc (%)" in md
    assert md.count("| Method / Variant") == 2


def test_seeds_are_pooled_into_one_operating_point(tmp_path):
    write_fake_cell(tmp_path, variant="margin", budget=16, scores=[1, 0, 0, 0], nfe=16, seed=1)
    write_fake_cell(tmp_path, variant="margin", budget=16, scores=[1, 1, 1, 0], nfe=16, seed=2)
    points = load_results(tmp_path)
    assert len(points) == 1
    p = points.iloc[0]
    assert p["n_seeds"] == 2 and p["n_examples"] == 8 and p["score"] == pytest.approx(0.5)
    assert (p["score_ci_low"], p["score_ci_high"]) == pytest.approx(wilson_ci(4, 8))


def test_boe_report_writes_tables_and_plots(sweep_dir, capsys):
    assert report_main([str(sweep_dir)]) == 0
    for name in ("table_main.md", "table_main.tex", "accuracy_by_budget.md", "table_ablation.md", "cells.md",
                 "pareto_nfe.png", "pareto_nfe.pdf", "points.csv"):
        assert (sweep_dir / name).stat().st_size > 0, name
    assert (sweep_dir / "pareto_nfe.png").read_bytes()[:4] == b"\x89PNG"
    assert report_main([str(sweep_dir), "--x", "forward_equivalents", "--no-plot"]) == 0
    assert report_main([str(sweep_dir / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_every_cell_is_counted_once(sweep_dir):
    points = load_results(sweep_dir)
    assert len(points) == 12
    combos = set(itertools.product(["confidence", "boe"], [32, 64], [128, 256]))
    fixed = points[points["sweep.placement"] == "budget"]
    assert set(zip(fixed["variant"], fixed["budget"].astype(int), fixed["gen_length"])) == combos


def test_nfe_to_stop_counts_the_full_nfe_of_sequences_that_never_stop(tmp_path):
    cid = write_fake_cell(tmp_path, variant="confidence", budget=16, scores=[1, 0, 1], nfe=16)
    from boe_eval.store import read_cell

    rows = read_cell(tmp_path, cid)  # rewritten through the store (an edited file no longer verifies)
    for row, stop in zip(rows, (4, None, 10)):
        row["nfe_to_stop"] = stop
    write_cell(tmp_path, cid, rows)
    points = load_results(tmp_path)
    assert points.iloc[0]["nfe_to_stop"] == pytest.approx((4 + 16 + 10) / 3)


def test_a_budgeted_run_placed_at_its_measured_compute_is_matched_by_its_budget(tmp_path):
    # KLASS-like: assigned 8 NFE, finished blocks early (6.5 NFE on average) -> shown at budget 8 as '@6.5'
    write_fake_cell(tmp_path, variant="klass", budget=8, scores=[1, 1, 0, 1], nfe=6.5, placement="measured")
    points = load_results(tmp_path)
    row, at = pick_at_budget(points, 8, "nfe")
    assert at == 6.5 and row["score"] == 0.75
    assert pick_at_budget(points, 6, "nfe") == (None, None)


@pytest.mark.parametrize("nfe", [(8, 8), (8, 16)])  # equal compute (bars) and different compute (points)
def test_a_score_of_zero_is_plotted_although_its_wilson_bound_rounds_above_it(nfe, tmp_path):
    """Wilson's lower bound for 0 successes comes out as ~3.5e-18, not 0 (store.wilson_interval), so score - low is
    a tiny negative number, which matplotlib refuses as an error bar; the plot must still be drawn."""
    from boe_eval.analysis.plots import plot_score_vs_compute
    from boe_eval.store import wilson_interval

    low, high = wilson_interval(0, 100)
    assert low > 0.0  # the rounding this test is about
    rows = [{"sampler": "confidence", "variant": "confidence", "score": 0.0, "score_ci_low": low, "score_ci_high": high,
             "nfe": nfe[0], "n_examples": 100, "model": "m", "task": "t"},
            {"sampler": "random", "variant": "random", "score": 1.0, "score_ci_low": wilson_interval(100, 100)[0],
             "score_ci_high": 1.0, "nfe": nfe[1], "n_examples": 100, "model": "m", "task": "t"}]
    path = plot_score_vs_compute(rows, tmp_path / "plot.png")
    assert path.exists() and path.stat().st_size > 0
