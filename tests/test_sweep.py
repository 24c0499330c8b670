"""Compute-matched sweeps: knob derivation, cell planning, honest budgets, kill -9 and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from boe_eval.errors import ConfigError
from boe_eval.store import read_rows
from boe_eval.harness.sweep import derive_steps, knob_rule, plan_sweep, read_sweep, run_sweep

TESTS = Path(__file__).parent
REPO = TESTS.parent
os.environ["BOE_TEST_TASKS"] = str(TESTS / "lm_tasks")
#: columns that legitimately differ between two runs of the same cell (timing, provenance of the process)
TIMING = {"wall_time_s", "decode_time_s", "git_commit", "torch_threads"}


def write_sweep(root: Path, name: str, body: dict, model_dir: str, out: Path) -> list[str]:
    """A sweep config on the toy task and tiny random model; returns the Hydra overrides to run it."""
    (root / "sweep").mkdir(parents=True, exist_ok=True)
    text = "# @package _global_\n" + yaml.safe_dump({
        "defaults": [{"override /model": "tiny_random"}, {"override /task": "toy_copy"}],
        "sweep": {"name": name, "only": {"sampler": None, "budget": None}, **body},
        "limit": 3,
        "hydra": {"sweeper": {"params": {"sweep.only.sampler": ",".join(
            s if isinstance(s, str) else s.get("label", s["name"]) for s in body.get("samplers", []))}}},
    }, sort_keys=False)
    (root / "sweep" / f"{name}.yaml").write_text(text)
    return [f"hydra.searchpath=[file://{TESTS / 'configs'},file://{root}]", f"sweep={name}",
            f"model.path={model_dir}", f"output_dir={out}", "+progress=false"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


# ----------------------------------------------------------------------------------- knob derivation
@pytest.mark.parametrize(
    "sampler, params, budget, axis, expected_steps",
    [
        ("confidence", {}, 16, "nfe", 16),  # greedy: one forward per step
        ("pc_sampler", {}, 24, "nfe", 24),
        ("boe", {}, 16, "nfe", 8),  # 2 NFE per step (current + surrogate forward)
        ("boe", {}, 16, "forward_equivalents", 4),  # 2 forwards + 1 backward (= 2 forwards) per step
        ("boe", {"fuse_forward": True}, 15, "forward_equivalents", 5),  # one fused forward + 1 backward
        ("boe", {"fuse_forward": True}, 16, "nfe", 8),  # still 2 NFE per step in paper accounting
        ("remdm_llada", {}, 32, "nfe", 16),
        ("lookum", {"k": 2}, 24, "nfe", 8),  # 1 + k forwards per step
        ("lookum", {"k": 3}, 32, "nfe", 8),
        ("entropy", {}, 12, "steps", 12),
        ("boe", {}, 12, "steps", 12),  # fixed horizon: same steps for everyone, not compute-matched
    ],
)
def test_knob_follows_from_the_budget(sampler, params, budget, axis, expected_steps):
    a = derive_steps(sampler, params, budget, axis, gen_length=32, block_length=32)
    assert a.steps == expected_steps
    assert abs(a.planned_cost - budget) <= a.step_cost


def test_budgets_the_layout_cannot_meet_within_one_step_are_refused():
    # 4 blocks: steps must be a multiple of 4; LookUM (k=2) costs 3 NFE a step
    a = derive_steps("lookum", {"k": 2}, 36, "nfe", gen_length=32, block_length=8)
    assert (a.steps, a.planned_cost) == (12, 36)
    with pytest.raises(ConfigError, match=r"budget=30 \(nfe\) cannot be met by lookum.*multiple of 4.*24, 36"):
        derive_steps("lookum", {"k": 2}, 30, "nfe", gen_length=32, block_length=8)
    # the nearest admissible step count is chosen when it lands within one step's cost
    assert derive_steps("confidence", {}, 17, "nfe", gen_length=32, block_length=8).steps == 16
    with pytest.raises(ConfigError, match="budget=0"):
        derive_steps("confidence", {}, 0, "nfe", gen_length=32, block_length=32)


def test_samplers_without_a_rule_get_a_clear_error():
    with pytest.raises(ConfigError, match="sampler 'mystery' has no compute-matching rule: samplers with one are"):
        knob_rule("mystery")
    assert knob_rule("eb").adaptive == "gamma"


def test_every_registered_sampler_has_a_knob_rule():
    from boe_eval.samplers import SAMPLERS

    missing = sorted(name for name, (cls, _) in SAMPLERS.items() if cls.knob is None)
    assert missing == [], f"registered samplers without a compute-matching rule: {missing}"


# ----------------------------------------------------------------------------------- config checks
@pytest.mark.parametrize(
    "body, message",
    [
        ({"budgets": [4], "samplers": ["confidence"], "budget_axis": "flops"}, "sweep.budget_axis='flops'"),
        ({"budgets": [], "samplers": ["confidence"]}, "sweep.budgets"),
        ({"budgets": [4, -1], "samplers": ["confidence"]}, "sweep.budgets contains -1"),
        ({"budgets": [4], "samplers": []}, "sweep.samplers is empty"),
        ({"budgets": [4], "samplers": ["nope"]}, "sampler 'nope' has no compute-matching rule"),
        ({"budgets": [4], "samplers": ["eb"]}, "is adaptive: give grid"),
        ({"budgets": [4], "samplers": [{"name": "margin", "grid": [1]}]}, "takes no grid"),
        ({"budgets": [4], "samplers": ["margin", "margin"]}, "two entries labelled 'margin'"),
        ({"budgets": [4], "samplers": [{"name": "margin", "parms": {}}]}, "unknown key 'parms'"),
        ({"budgets": [4], "samplers": ["margin"], "only": {"sampler": "entropy"}}, "sweep.only.sampler='entropy'"),
        ({"budgets": [4], "samplers": ["margin"], "only": {"budget": 5}}, "sweep.only.budget=5"),
        # 4 blocks of 2 on the toy task's 8 slots: 4 or 8 steps only
        ({"budgets": [6], "samplers": ["confidence"], "+block_length": 2}, "budget=6 \\(nfe\\) cannot be met by confidence"),
    ],
)
def test_bad_sweep_configs_fail_before_any_model_is_loaded(tiny_bert_dir, tmp_path, body, message):
    extra = [f"{k[1:]}={body.pop(k)}" for k in list(body) if k.startswith("+")]
    overrides = write_sweep(tmp_path / "conf", "bad", body, tiny_bert_dir, tmp_path / "out")
    with pytest.raises(ConfigError, match=message):
        plan_sweep(compose(overrides + extra))
    assert not (tmp_path / "out").exists()


def test_plan_has_one_cell_per_sampler_budget_seed(tiny_bert_dir, tmp_path):
    body = {"budgets": [2, 4, 8], "seeds": [1, 2],
            "samplers": ["confidence", {"name": "random", "label": "random order"}]}
    overrides = write_sweep(tmp_path / "conf", "plan", body, tiny_bert_dir, tmp_path / "out")
    cells = plan_sweep(compose(overrides))
    got = sorted((c.entry.label, c.budget, c.spec.steps, c.spec.seed) for c in cells)
    want = sorted((s, b, b, seed) for s in ("confidence", "random order") for b in (2, 4, 8) for seed in (1, 2))
    assert got == want
    from boe_eval.store import cell_id

    assert len({cell_id(c.spec.identity()) for c in cells}) == 12
    only = plan_sweep(compose(overrides + ["sweep.only.sampler=random order", "sweep.only.budget=4"]))
    assert [(c.entry.label, c.budget, c.spec.seed) for c in only] == [("random order", 4, 1), ("random order", 4, 2)]


def test_budget_fractions_scale_with_the_generation_length(tiny_bert_dir, tmp_path):
    """The d1 protocol's T = L/2 for every sampler: `budget_axis: steps` with `budget_fractions: [0.5]`."""
    body = {"budget_axis": "steps", "budget_fractions": [0.5, 1.0], "samplers": ["confidence", "margin"]}
    overrides = write_sweep(tmp_path / "conf", "frac", body, tiny_bert_dir, tmp_path / "out")
    for length in (8, 16):
        cells = plan_sweep(compose(overrides + [f"gen_length={length}", f"block_length={length}"]))
        assert sorted((c.entry.name, c.budget, c.spec.steps) for c in cells) == sorted(
            (s, b, b) for s in ("confidence", "margin") for b in (length // 2, length))
    with pytest.raises(ConfigError, match="both set"):
        plan_sweep(compose(overrides + ["+sweep.budgets=[4]"]))


# ----------------------------------------------------------------------------------- running
GRID = {"budget_axis": "nfe", "budgets": [2, 4, 8],
        "samplers": ["confidence", "margin", {"name": "random", "label": "random_order"}]}


def _frame(results_dir: Path) -> pd.DataFrame:
    df = pd.DataFrame(read_rows(results_dir))
    df = df.drop(columns=[c for c in df.columns if c in TIMING])
    return df.sort_values(["cell_id", "row_type", "doc_id"], na_position="last").reset_index(drop=True)


def test_sweep_rows_are_honest_and_a_rerun_skips_every_cell(tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    cfg = compose(write_sweep(tmp_path / "conf", "grid", GRID, tiny_bert_dir, out) + ["plot=false"])
    run_sweep(cfg)
    rows = read_rows(out)
    summaries = [r for r in rows if r["row_type"] == "summary"]
    examples = [r for r in rows if r["row_type"] == "example"]
    assert len(summaries) == 9 and len(examples) == 9 * 3
    for s in summaries:
        assert s["budget_axis"] == "nfe" and s["sweep.within_one_step"] is True
        assert s["steps"] == s["budget"] and s["nfe"] == s["budget"]
        mine = [e for e in examples if e["cell_id"] == s["cell_id"]]
        assert all(e["nfe"] == s["budget"] for e in mine)  # every sequence spent exactly its budget
        assert s["score"] == pytest.approx(sum(e["score"] for e in mine) / len(mine))
    files = sorted((out / "rows").iterdir())
    stamps = [f.stat().st_mtime_ns for f in files]
    run_sweep(cfg)
    assert [f.stat().st_mtime_ns for f in sorted((out / "rows").iterdir())] == stamps
    for name in ("accuracy_by_budget.md", "table_main.md", "table_main.tex", "table_ablation.md", "cells.md"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_sweep_killed_with_sigkill_and_restarted_ends_with_the_same_table(tiny_bert_dir, tmp_path):
    """`boe-eval sweep=<name>` in a subprocess is killed -9 after its first cell file appears, then
    restarted; rows and tables equal those of an uninterrupted run, with no duplicate or partial row."""
    conf = tmp_path / "conf"
    reference = tmp_path / "reference"
    run_sweep(compose(write_sweep(conf, "grid", GRID, tiny_bert_dir, reference) + ["plot=false"]))

    out = tmp_path / "killed"
    overrides = write_sweep(conf, "grid", GRID, tiny_bert_dir, out) + ["plot=false"]
    exe = str(Path(sys.executable).with_name("boe-eval"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen([exe, *overrides], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "rows").is_dir() and any((out / "rows").glob("*.jsonl")):
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "rows").glob("*.jsonl")))
    assert 1 <= done_before < 9, "the sweep must be killed mid-way"

    restart = subprocess.run([exe, *overrides], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert restart.returncode == 0, restart.stderr[-2000:]
    assert restart.stdout.count("complete, skipped") == done_before
    assert len(list((out / "rows").glob("*.jsonl"))) == 9
    killed, ref = _frame(out), _frame(reference)
    assert not killed.duplicated(subset=["cell_id", "row_type", "doc_id"]).any()
    pd.testing.assert_frame_equal(killed[ref.columns], ref)
    for name in ("accuracy_by_budget.md", "table_main.md", "table_main.tex"):
        assert (out / name).read_text() == (reference / name).read_text()


@pytest.mark.parametrize("how", ["mid-line", "line boundary", "emptied"])
def test_a_damaged_cell_is_recomputed_and_the_table_equals_the_uninterrupted_one(tiny_bert_dir, tmp_path, how):
    """Issue 12 acceptance: a rows file truncated mid-line, truncated at a line boundary or emptied is
    not counted complete; the rerun recomputes that cell alone (with a warning) and the rows and
    tables equal those of an uninterrupted run."""
    import shutil

    from boe_eval.store import DamagedCellWarning

    conf = tmp_path / "conf"
    reference = tmp_path / "reference"
    run_sweep(compose(write_sweep(conf, "grid", GRID, tiny_bert_dir, reference) + ["plot=false"]))
    out = tmp_path / "damaged"
    shutil.copytree(reference, out)
    victim = sorted((out / "rows").glob("*.jsonl"))[4]
    data = victim.read_bytes()
    lines = data.splitlines(keepends=True)
    cut = {"mid-line": len(data) - len(lines[-1]) - len(lines[-2]) // 2,  # inside the summary row
           "line boundary": len(data) - len(lines[-1]) - len(lines[-2]),  # summary + completion record gone
           "emptied": 0}[how]
    victim.write_bytes(data[:cut])
    # the report on the damaged folder does not crash: it warns and shows the 8 intact cells
    from boe_eval.analysis.load import load_results

    with pytest.warns(DamagedCellWarning, match=victim.name):
        assert len(load_results(out)) == 8
    others = {f: f.stat().st_mtime_ns for f in (out / "rows").glob("*.jsonl") if f != victim}
    with pytest.warns(DamagedCellWarning, match=rf"{victim.name}.*recomputing this cell"):
        run_sweep(compose(write_sweep(conf, "grid", GRID, tiny_bert_dir, out) + ["plot=false"]))
    assert {f: f.stat().st_mtime_ns for f in others} == others  # only the damaged cell was recomputed
    pd.testing.assert_frame_equal(_frame(out)[_frame(reference).columns], _frame(reference))
    for name in ("accuracy_by_budget.md", "table_main.md", "table_main.tex", "points.csv"):  # cells.md shows times
        if name == "points.csv":  # timing columns differ between runs
            a, b = (pd.read_csv(d / name).drop(columns=list(TIMING) + ["seconds_per_sequence"], errors="ignore")
                    for d in (out, reference))
            pd.testing.assert_frame_equal(a, b)
        else:
            assert (out / name).read_text() == (reference / name).read_text(), name
    assert sorted(p.name for p in (out / "rows").iterdir()) == sorted(p.name for p in (reference / "rows").iterdir())


def test_a_run_with_another_limit_is_refused_by_a_folder_of_committed_cells(tmp_path, monkeypatch):
    """A `limit=20` sweep written into a copy of results/tiny_sudoku_nfe (limit 500) stops with one
    line naming the limit before any model is loaded; the copy still reports exactly as committed."""
    import shutil

    from boe_eval.analysis.load import load_results
    from boe_eval.harness import sweep as sweep_module

    copy = tmp_path / "tiny_sudoku_nfe"
    shutil.copytree(REPO / "results" / "tiny_sudoku_nfe" / "rows", copy / "rows")

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr("boe_eval.models.loading.load_denoiser", no_model)
    with pytest.raises(ConfigError, match=r"cannot take this sweep: cells .* differ in limit: (500 vs 20|20 vs 500)"):
        sweep_module.run_sweep(compose(["sweep=tiny_sudoku_nfe", "limit=20", f"output_dir={copy}", "+progress=false"]))
    assert len(list((copy / "rows").iterdir())) == 51  # nothing written
    points = load_results(copy)
    committed = pd.read_csv(REPO / "results" / "tiny_sudoku_nfe" / "points.csv")
    assert len(points) == len(committed) == 51 and (points["n_seeds"] == 1).all()
    assert points["score"].tolist() == pytest.approx(committed["score"].tolist())


@pytest.mark.slow
def test_two_sweeps_into_one_folder_share_the_cells_and_compute_none_twice(tiny_bert_dir, tmp_path):
    """Two `boe-eval sweep=<name>` processes started together into one folder: every cell is computed
    by exactly one of them (per-cell lock), and the rows equal a single uninterrupted run."""
    conf = tmp_path / "conf"
    reference = tmp_path / "reference"
    run_sweep(compose(write_sweep(conf, "grid", GRID, tiny_bert_dir, reference) + ["plot=false"]))
    out = tmp_path / "shared"
    overrides = write_sweep(conf, "grid", GRID, tiny_bert_dir, out) + ["plot=false"]
    exe = str(Path(sys.executable).with_name("boe-eval"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    procs = [subprocess.Popen([exe, *overrides, f"hydra.run.dir={tmp_path / f'hydra{i}'}"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    computed = [line for stdout, _ in outs for line in stdout.splitlines() if ": score=" in line]
    assert len(computed) == 9, computed  # 9 cells, each computed once in total
    assert len(list((out / "rows").glob("*.jsonl"))) == 9
    pd.testing.assert_frame_equal(_frame(out)[_frame(reference).columns], _frame(reference))


@pytest.mark.slow
def test_hydra_multirun_lands_the_same_rows_as_the_in_process_sweep(tiny_bert_dir, tmp_path):
    """`boe-eval -m sweep=<name>` (one Hydra job per sampler) writes the same cells into the same
    layout as `boe-eval sweep=<name>`."""
    conf = tmp_path / "conf"
    reference = tmp_path / "reference"
    run_sweep(compose(write_sweep(conf, "grid", GRID, tiny_bert_dir, reference) + ["plot=false"]))
    out = tmp_path / "multirun"
    overrides = write_sweep(conf, "grid", GRID, tiny_bert_dir, out) + ["plot=false"]
    exe = str(Path(sys.executable).with_name("boe-eval"))
    proc = subprocess.run([exe, "-m", *overrides, f"hydra.sweep.dir={tmp_path / 'hydra'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p.name.split("_")[0] for p in (tmp_path / "hydra").iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2"]  # one job per sampler
    pd.testing.assert_frame_equal(_frame(out)[_frame(reference).columns], _frame(reference))
    assert (out / "accuracy_by_budget.md").read_text() == (reference / "accuracy_by_budget.md").read_text()


def test_sweep_configs_in_the_repo_are_valid_and_their_multirun_grid_covers_every_sampler():
    """Every configs/sweep/*.yaml: a valid sweep block, and its hydra.sweeper grid (one job per
    sampler) names exactly the sweep's samplers."""
    paths = sorted((REPO / "configs" / "sweep").glob("*.yaml"))
    assert paths, "no sweep config"
    from omegaconf import OmegaConf

    for path in paths:
        raw = yaml.safe_load(path.read_text())
        cfg = OmegaConf.create({"sweep": raw["sweep"], "seed": 1, "gen_length": 256})
        sweep = read_sweep(cfg)
        grid = raw.get("hydra", {}).get("sweeper", {}).get("params", {}).get("sweep.only.sampler")
        assert grid is not None, f"{path.name}: no hydra.sweeper.params grid"
        assert [g.strip() for g in str(grid).split(",")] == [e.label for e in sweep.samplers], path.name


def test_adaptive_sampler_sweeps_its_own_parameter_and_is_placed_at_measured_nfe(tiny_bert_dir, tmp_path,
                                                                                  monkeypatch):
    """An adaptive sampler (EB-style: here a confidence threshold, registered for this test only) runs
    once per value of its grid; its rows carry no budget and are placed at their measured NFE."""
    from dataclasses import dataclass

    import torch

    from boe_eval.analysis.load import load_results
    from boe_eval.analysis.tables import pick_at_budget
    from boe_eval.decoding.state import StepDecision
    from boe_eval.samplers.cost import KnobRule, StepCost
    from boe_eval.samplers.base import SAMPLERS, Sampler, SamplerConfig, top_k_mask

    @dataclass
    class ThresholdConfig(SamplerConfig):
        gamma: float = 0.5

    class ThresholdSampler(Sampler):
        name = "test_threshold"
        knob = KnobRule(lambda p: StepCost(1), adaptive="gamma")

        def select(self, ctx):
            first = top_k_mask(ctx.confidence, ctx, torch.ones_like(ctx.budget))
            return StepDecision(commit=first | ((ctx.confidence >= self.config.gamma) & ctx.eligible))

    monkeypatch.setitem(SAMPLERS, "test_threshold", (ThresholdSampler, ThresholdConfig))
    body = {"budgets": [2, 8], "samplers": ["confidence", {"name": "test_threshold", "grid": [0.0, 1.5]}]}
    out = tmp_path / "out"
    run_sweep(compose(write_sweep(tmp_path / "conf", "adaptive", body, tiny_bert_dir, out) + ["plot=false"]))
    summaries = {(r["sampler"], r["sweep.knob_value"]): r for r in read_rows(out) if r["row_type"] == "summary"}
    everything, one_by_one = summaries[("test_threshold", 0.0)], summaries[("test_threshold", 1.5)]
    # gamma=0 commits every slot at the first step; gamma=1.5 (no probability reaches it) one per step
    assert everything["nfe"] == 1 and one_by_one["nfe"] == 8
    for r in (everything, one_by_one):
        assert r["budget"] is None and r["sweep.placement"] == "measured" and r["sweep.knob"] == "gamma"
        assert r["sweep.within_one_step"] is None
    assert summaries[("confidence", 2)]["sweep.within_one_step"] is True
    points = load_results(out)
    row, at = pick_at_budget(points[points["variant"] == "test_threshold"], 2, "nfe")
    assert at == 1 and row["sweep.knob_value"] == 0.0


def test_wall_time_axis_uses_one_persisted_calibration(tiny_bert_dir, tmp_path):
    import json

    out = tmp_path / "out"
    body = {"budget_axis": "wall_time", "budgets": [0.001, 0.004], "samplers": ["confidence"]}
    cfg = compose(write_sweep(tmp_path / "conf", "wall", body, tiny_bert_dir, out) + ["plot=false"])
    run_sweep(cfg)
    seconds = json.loads((out / "calibration.json").read_text())["seconds_per_forward"]
    summaries = sorted((r for r in read_rows(out) if r["row_type"] == "summary"), key=lambda r: r["budget"])
    for s in summaries:
        want = min(range(1, 9), key=lambda n: (abs(n - s["budget"] / seconds), n))
        assert s["steps"] == want and s["sweep.placement"] == "measured"
        assert s["sweep.measured_cost"] == pytest.approx(s["decode_time_s"] / s["n_examples"])
        assert s["sweep.seconds_per_forward"] == seconds
    stamps = sorted(f.stat().st_mtime_ns for f in (out / "rows").iterdir())
    run_sweep(cfg)  # a restart reads the same calibration, so it derives the same (complete) cells
    assert sorted(f.stat().st_mtime_ns for f in (out / "rows").iterdir()) == stamps


@pytest.mark.parametrize("sweep_name, model", [("paper_table2", "llada_8b_instruct"), ("paper_table3", "llada_1_5")])
@pytest.mark.parametrize("length", [128, 256])
def test_paper_table_sweeps_state_the_d1_protocol(tiny_bert_dir, tmp_path, sweep_name, model, length):
    """Table 2/3 sweeps: block 32, T = L/2 steps for every (registered) sampler, greedy, on the paper's
    model; the weights are replaced by the tiny model so the plan can be built here."""
    from boe_eval.samplers import SAMPLERS

    base = [f"sweep={sweep_name}", f"model.path={tiny_bert_dir}", "task=gsm8k", f"gen_length={length}",
            f"output_dir={tmp_path}"]
    cfg = compose(base)
    assert cfg.model.name == model and cfg.block_length == 32 and cfg.temperature == 0.0
    sweep = read_sweep(cfg)
    assert [e.name for e in sweep.samplers] == ["confidence", "margin", "entropy", "pc_sampler", "remdm_llada",
                                                "lookum", "boe"]
    for entry in sweep.samplers:
        if entry.name not in SAMPLERS:
            continue  # sampler not implemented yet: its plan is checked once it registers
        [cell] = plan_sweep(compose(base + [f"sweep.only.sampler={entry.label}"]))
        assert (cell.spec.steps, cell.spec.block_length, cell.spec.gen_length) == (length // 2, 32, length)
        assert cell.spec.lm_eval_task == "gsm8k_d1" and cell.spec.extra["budget_axis"] == "steps"


def test_figure4_sweep_is_compute_matched_in_paper_nfe(tiny_bert_dir, tmp_path):
    from boe_eval.samplers import SAMPLERS

    base = ["sweep=paper_figure4", f"model.path={tiny_bert_dir}", "task=gsm8k", f"output_dir={tmp_path}"]
    cfg = compose(base)
    assert (cfg.gen_length, cfg.block_length) == (256, 32)
    for entry in read_sweep(cfg).samplers:
        if entry.name not in SAMPLERS or knob_rule(entry.name).adaptive:
            continue
        cells = plan_sweep(compose(base + [f"sweep.only.sampler={entry.label}"]))
        for cell in cells:
            params = cell.spec.sampler_params
            per_step = {"boe": 2, "lookum": 1 + params.get("k", 0)}.get(entry.name, 1)
            assert cell.spec.steps * per_step == cell.budget and cell.spec.steps % 8 == 0


def test_table5_sweep_lists_the_ablation_variants_at_one_token_per_step(tiny_bert_dir, tmp_path):
    cfg = compose(["sweep=paper_table5", f"model.path={tiny_bert_dir}", f"output_dir={tmp_path}"])
    cells = plan_sweep(cfg)
    by_label = {c.entry.label: c for c in cells}
    assert list(by_label) == ["confidence_top1", "boe_full", "boe_no_gating", "boe_no_anti_collapse", "boe_no_aqa",
                              "boe_rho0.10", "boe_rho0.25", "boe_rho0.50"]
    for cell in cells:
        assert (cell.spec.steps, cell.spec.gen_length, cell.spec.block_length) == (128, 128, 32)
        assert cell.spec.lm_eval_task == "gsm8k_d1"
    boe = {label: c.spec.sampler_params for label, c in by_label.items() if label != "confidence_top1"}
    full = boe["boe_full"]
    assert full["floor_schedule"] == "increasing"
    changed = {label: {k: v for k, v in p.items() if full[k] != v} for label, p in boe.items()}
    assert changed == {"boe_full": {}, "boe_no_gating": {"gating": False},
                       "boe_no_anti_collapse": {"anti_collapse": False}, "boe_no_aqa": {"aqa": False},
                       "boe_rho0.10": {"rho": 0.10}, "boe_rho0.25": {}, "boe_rho0.50": {"rho": 0.50}}


def test_default_output_folders_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    """Config defaults are anchored at the project folder (`${boe_root:}`): a sweep's rows go to
    <project>/results/<sweep> and a job's Hydra run folder to <project>/outputs/..., wherever
    `boe-eval` is started; an explicit relative `output_dir=` is resolved against the working directory."""
    from omegaconf import OmegaConf

    from boe_eval.store import check_output_dir

    monkeypatch.chdir(tmp_path)
    cfg = compose(["sweep=tiny_sudoku_nfe"])
    assert cfg.output_dir == str(REPO / "results" / "tiny_sudoku_nfe")
    raw = yaml.safe_load((REPO / "configs" / "config.yaml").read_text())
    assert raw["hydra"]["run"]["dir"].startswith("${boe_root:}/outputs/")
    assert raw["hydra"]["sweep"]["dir"].startswith("${boe_root:}/multirun/")
    assert OmegaConf.create({"d": "${boe_root:}"}).d == str(REPO)
    assert check_output_dir("mine") == tmp_path / "mine"
