"""lm-eval adapter, Hydra entry point and result rows, on a random tiny model and a toy task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from boe_eval.decoding import DecodeConfig, generate_batched
from boe_eval.store import cell_id, read_rows, wilson_interval, write_cell
from boe_eval.samplers import build_sampler

TOY_TASKS = str(Path(__file__).parent / "lm_tasks")
TOY_SOURCES = ["ab", "cde", "x", "hello", "zz", "pqr"]


TEST_CONFIGS = Path(__file__).parent / "configs"
os.environ["BOE_TEST_TASKS"] = TOY_TASKS


def toy_overrides(model_dir: str, out: Path) -> list[str]:
    return [
        f"hydra.searchpath=[file://{TEST_CONFIGS}]",
        "model=tiny_random",
        "task=toy_copy",
        f"model.path={model_dir}",
        f"output_dir={out}",
        "plot=false",
    ]


def compose(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=["+progress=false", *overrides])


def test_adapter_generations_equal_direct_decoding(tiny_bert, tiny_bert_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from boe_eval.harness.lm_adapter import BoeLM, request_seed

    lm = BoeLM(pretrained=tiny_bert_dir, sampler="margin", batch_size=4, temperature=0.5, seed=7, progress=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=["toy_copy"], task_manager=TaskManager(include_path=TOY_TASKS),
                                  limit=5, log_samples=True, bootstrap_iters=0)
    samples = sorted(out["samples"]["toy_copy"], key=lambda s: s["doc_id"])
    prompts = [tiny_bert.tokenizer(f"copy:{s}=").input_ids for s in TOY_SOURCES[:5]]
    seeds = [request_seed(7, "toy_copy", i, i) for i in range(5)]
    direct = generate_batched(tiny_bert, prompts, build_sampler("margin"),
                              DecodeConfig(gen_length=8, steps=8, temperature=0.5, until=(".",)), seeds, batch_size=1,
                              progress=False)
    assert [s["resps"][0][0] for s in samples] == [r.text for r in direct]
    assert all(lm.records[("toy_copy", i)]["nfe"] == 8 for i in range(5))


def test_adapter_rejects_unknown_sampler_parameters(tiny_bert):
    from boe_eval.errors import ConfigError
    from boe_eval.harness.lm_adapter import BoeLM

    with pytest.raises(ConfigError, match="no parameter 'bogus'"):
        BoeLM(denoiser=tiny_bert, sampler="confidence", bogus=3)
    with pytest.raises(ConfigError, match="sampler='nope' is unknown"):
        BoeLM(denoiser=tiny_bert, sampler="nope")


def test_job_writes_rows_and_summary_and_skips_completed_cells(tiny_bert_dir, tmp_path):
    from boe_eval.harness.cli import run_job

    cfg = compose(toy_overrides(tiny_bert_dir, tmp_path) + ["limit=4"])
    run_job(cfg)
    rows = read_rows(tmp_path)
    examples = [r for r in rows if r["row_type"] == "example"]
    summaries = [r for r in rows if r["row_type"] == "summary"]
    assert sorted(r["sampler"] for r in summaries) == ["confidence", "entropy", "margin", "random"]
    assert len(examples) == 16
    for s in summaries:
        mine = [r for r in examples if r["sampler"] == s["sampler"]]
        assert s["score"] == pytest.approx(sum(r["score"] for r in mine) / 4)
        assert s["nfe"] == 8 and all(r["nfe"] == 8 and r["forwards"] == 8 for r in mine)
        for key in ("git_commit", "torch_version", "transformers_version", "lm_eval_version", "dtype", "device"):
            assert s[key]
    files = sorted((tmp_path / "rows").iterdir())
    mtimes = [f.stat().st_mtime_ns for f in files]
    run_job(cfg)  # a rerun skips every completed cell
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "rows").iterdir())] == mtimes
    assert len(read_rows(tmp_path)) == len(rows)


def test_bad_input_stops_before_loading_the_model(tiny_bert_dir, tmp_path):
    from boe_eval.errors import ConfigError
    from boe_eval.harness.specs import build_specs

    base = toy_overrides(tiny_bert_dir, tmp_path)
    cases = {
        "steps=0": "steps=0",
        "task.lm_eval_task=nope_task": "task 'nope_task' is unknown",
        "model.path=/no/such/dir": "is not a directory",
        "limit=-3": "limit=-3",
        "temperature=-1": "temperature",
        "sampler=confidence +sampler.params.bogus=1": "no parameter 'bogus'",
        "+sampler.params.rho=1": "sampler.params",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            build_specs(compose(base + override.split()))
    assert not (tmp_path / "rows").exists()


def test_result_files_are_all_or_nothing(tmp_path):
    class Boom(Exception):
        pass

    def rows():
        yield {"a": 1}
        raise Boom

    with pytest.raises(Boom):
        write_cell(tmp_path, "abc", rows())
    assert list((tmp_path / "rows").iterdir()) == []
    write_cell(tmp_path, cell_id({"x": 1}), [{"a": 1}, {"a": float("nan")}])
    assert read_rows(tmp_path) == [{"a": 1}, {"a": None}]


def test_wilson_interval_matches_closed_form():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 4)[0] == 0.0


@pytest.mark.slow
def test_console_script_multirun_and_bad_input(tiny_bert_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "BOE_TEST_TASKS": TOY_TASKS}
    exe = str(Path(sys.executable).with_name("boe-eval"))
    overrides = [o for o in toy_overrides(tiny_bert_dir, tmp_path / "out") if not o.startswith("output_dir")]
    proc = subprocess.run([exe, "-m", "sampler=confidence,margin,boe_no_gating", "limit=2", "+progress=false",
                           f"hydra.sweep.dir={tmp_path / 'multi'}", *overrides],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [r for r in read_rows(tmp_path / "multi") if r["row_type"] == "summary"]
    assert sorted(r["sampler"] for r in summaries) == ["boe", "confidence", "margin"]
    # an ablation config is named in rows and in the printed table, not just by its sampler
    assert sorted(r["variant"] for r in summaries) == ["boe_no_gating", "confidence", "margin"]
    assert "| boe_no_gating " in proc.stdout
    swept = subprocess.run([exe, "-m", "sampler=eb", "sampler.params.gamma=0,0.5", "limit=2", "+progress=false",
                            f"hydra.sweep.dir={tmp_path / 'eb'}", *overrides],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert swept.returncode == 0, swept.stderr[-2000:]
    eb = [r for r in read_rows(tmp_path / "eb") if r["row_type"] == "summary"]
    assert sorted(r["variant"] for r in eb) == ["eb (gamma=0)", "eb (gamma=0.5)"]
    bad = subprocess.run([exe, "steps=9", *overrides], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("boe-eval: error: steps=9")
    json.dumps(summaries)  # rows are plain JSON


def test_model_name_follows_a_path_that_leaves_the_built_in_model(tiny_bert_dir, tmp_path):
    from boe_eval.harness.specs import model_label

    # the default (built-in) model config pointed at another directory is not reported as built-in
    cfg = compose([f"model.path={tiny_bert_dir}", f"output_dir={tmp_path}"])
    assert cfg.model.name == "tiny_addition" and model_label(cfg, str(tiny_bert_dir)) == Path(tiny_bert_dir).name
    assert model_label(cfg, "builtin:tiny_addition") == "tiny_addition"
    # a named non-built-in config (as for local LLaDA weights) keeps its name whatever the path
    cfg = compose(toy_overrides(tiny_bert_dir, tmp_path))
    assert model_label(cfg, str(tiny_bert_dir)) == cfg.model.name == "tiny-random"


def test_adapter_honours_max_gen_toks_and_until(tiny_bert):
    from lm_eval.api.instance import Instance

    from boe_eval.harness.lm_adapter import BoeLM

    lm = BoeLM(denoiser=tiny_bert, sampler="confidence", gen_length=16, steps=16, progress=False)
    full = lm.generate_until([Instance("generate_until", {}, ("copy:ab=", {"until": [], "max_gen_toks": 16}), 0)])[0]
    short = lm.generate_until([Instance("generate_until", {}, ("copy:ab=", {"until": [], "max_gen_toks": 3}), 0)])[0]
    assert len(full) > 3 and short == full[:3]
    stop = full[4]
    cut = lm.generate_until([Instance("generate_until", {}, ("copy:ab=", {"until": [stop], "max_gen_toks": 16}), 0)])[0]
    assert cut == full[: full.index(stop)]


# ----------------------------------------------------------------------------------- result store (issue 12)
COMMITTED = Path(__file__).resolve().parents[1] / "results" / "tiny_sudoku_nfe" / "rows"


def _cell_rows(n: int = 4) -> list[dict]:
    rows = [{"row_type": "example", "doc_id": i, "score": float(i % 2), "cell_id": "c0ffee"} for i in range(n)]
    rows.append({"row_type": "summary", "n_examples": n, "score": 0.5, "cell_id": "c0ffee"})
    return rows


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    if how == "mid-line":
        path.write_bytes(data[: len(data) - len(lines[-2]) // 2 - len(lines[-1])])
    elif how == "line boundary":
        path.write_bytes(b"".join(lines[:-2]))  # summary row and completion record cut off
    elif how == "emptied":
        path.write_bytes(b"")
    else:
        raise ValueError(how)


def test_a_cell_file_ends_with_a_completion_record_that_verifies_count_and_checksum(tmp_path):
    from boe_eval.store import COMPLETION, cell_path, verify_file

    path = write_cell(tmp_path, "c0ffee", _cell_rows(), identity={"limit": 4})
    lines = path.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[-1])
    assert record["row_type"] == COMPLETION and record["n_rows"] == 5 and record["identity"] == {"limit": 4}
    import hashlib

    assert record["sha256"] == hashlib.sha256(b"".join(lines[:-1])).hexdigest()  # restated independently
    check = verify_file(cell_path(tmp_path, "c0ffee"))
    assert check.ok and check.rows == _cell_rows()
    # one changed byte inside a row (same length, still valid JSON) breaks the checksum
    path.write_bytes(path.read_bytes().replace(b'"score": 1.0', b'"score": 0.0', 1))
    assert not verify_file(path).ok and "checksum" in verify_file(path).reason


@pytest.mark.parametrize("how", ["mid-line", "line boundary", "emptied"])
def test_a_damaged_cell_is_never_complete_and_readers_skip_it_with_a_warning(tmp_path, how):
    from boe_eval.store import DamagedCellWarning, is_complete

    write_cell(tmp_path, "c0ffee", _cell_rows())
    write_cell(tmp_path, "beef", [{**r, "cell_id": "beef"} for r in _cell_rows(2)])
    _damage(tmp_path / "rows" / "c0ffee.jsonl", how)
    with pytest.warns(DamagedCellWarning, match="c0ffee.jsonl"):
        assert not is_complete(tmp_path, "c0ffee")
    assert is_complete(tmp_path, "beef")
    with pytest.warns(DamagedCellWarning):
        rows = read_rows(tmp_path)
    assert [r["cell_id"] for r in rows] == ["beef"] * 3


def test_every_committed_cell_verifies_by_its_summary_row_and_a_cut_copy_does_not(tmp_path):
    """The committed cells predate completion records (format 1): they verify by their closing
    summary row (n_examples = example rows); any cut of one does not."""
    from boe_eval.store import verify_file

    files = sorted(COMMITTED.glob("*.jsonl"))
    assert len(files) == 51
    for f in files:
        check = verify_file(f)
        assert check.ok and check.record is None, (f, check.reason)
        assert len(check.rows) == check.rows[-1]["n_examples"] + 1 == 501
    data = files[0].read_bytes()
    lines = data.splitlines(keepends=True)
    copy = tmp_path / "rows" / files[0].name
    copy.parent.mkdir()
    for cut in (len(data) - 1, len(data) - len(lines[-1]), len(data) - len(lines[-1]) - 7, 0):
        copy.write_bytes(data[:cut])
        assert not verify_file(copy).ok, cut


def test_a_full_disk_leaves_no_temp_file_and_ends_in_one_line(tmp_path, monkeypatch):
    import errno

    from boe_eval.analysis.report import write_text_atomic
    from boe_eval import store as results
    from boe_eval.store import StoreError

    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(StoreError, match=r"cannot write results to .*c0ffee.jsonl.*no space left on the device$"):
        results.write_cell(tmp_path, "c0ffee", _cell_rows())
    (tmp_path / "report").mkdir()
    with pytest.raises(StoreError, match="no space left on the device"):
        write_text_atomic(tmp_path / "report" / "table.md", "| a |\n")
    monkeypatch.undo()
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def _claim_and_compute(results_dir: str, cids: list[str], log: str) -> None:
    """A child process: claim each cell, 'compute' it (0.3 s), write it, release; log what it computed."""
    import time as _time

    from boe_eval.store import claim_cell

    queue = [(c, False) for c in cids]
    while queue:
        cid, waited = queue.pop(0)
        state, lock = claim_cell(results_dir, cid, blocking=waited)
        if state == "busy":
            queue.append((cid, True))
            continue
        if state == "claimed":
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()} {cid}\n")
            _time.sleep(0.3)
            write_cell(results_dir, cid, [{**r, "cell_id": cid} for r in _cell_rows(2)])
            lock.release()


def test_two_processes_never_compute_the_same_cell_twice(tmp_path):
    import multiprocessing

    cids = [f"cell{i:02d}" for i in range(8)]
    log = tmp_path / "computed.log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_claim_and_compute, args=(str(tmp_path), cids, str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    computed = [line.split() for line in log.read_text().splitlines()]
    assert sorted(c for _, c in computed) == cids  # every cell exactly once
    assert len({pid for pid, _ in computed}) == 2  # and the work was shared
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == [f"{c}.jsonl" for c in cids]  # no lock/temp left


def test_a_killed_lock_holder_does_not_block_the_cell(tmp_path):
    import signal
    import time as _time

    from boe_eval.store import claim_cell

    code = ("import sys, time; from boe_eval.store import claim_cell; "
            f"state, lock = claim_cell({str(tmp_path)!r}, 'c0ffee'); print(state, flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "claimed"
    assert claim_cell(tmp_path, "c0ffee", blocking=False) == ("busy", None)
    child.send_signal(signal.SIGKILL)
    child.wait()
    _time.sleep(0.1)
    state, lock = claim_cell(tmp_path, "c0ffee", blocking=False)
    assert state == "claimed"
    lock.release()


def test_report_refuses_to_pool_cells_of_different_limits_or_code(tmp_path):
    from boe_eval.analysis.load import PoolingError, load_results

    common = {"model": "m", "model_path": "/m", "task": "t", "lm_eval_task": "t", "gen_length": 8, "block_length": 8,
              "steps": 8, "temperature": 0.0, "early_stop": False, "sampler": "confidence", "variant": "confidence",
              "dtype": "float32", "git_commit": "abc", "seed": 1, "limit": 4}

    def cell(folder, **change):
        fields = {**common, **change}
        cid = cell_id(fields)
        rows = [{"row_type": "example", **fields, "cell_id": cid, "doc_id": i, "score": 1.0} for i in range(2)]
        rows.append({"row_type": "summary", **fields, "cell_id": cid, "n_examples": 2, "score": 1.0})
        write_cell(folder, cid, rows)
        return cid

    cell(tmp_path / "seeds")
    cell(tmp_path / "seeds", seed=2)
    assert load_results(tmp_path / "seeds").iloc[0]["n_seeds"] == 2  # two seeds of one experiment pool
    for name, change in {"limit": {"limit": 20}, "git_commit": {"git_commit": "def", "seed": 2},
                         "model_path": {"model_path": "/other", "seed": 2}}.items():
        folder = tmp_path / name
        first = cell(folder)
        second = cell(folder, **change)
        with pytest.raises(PoolingError, match=rf"rows/\*(?:{first}|{second}).jsonl.* differ in {name}: "):
            load_results(folder)


def test_boe_report_on_a_damaged_cell_warns_in_one_line_and_reports_the_others(tmp_path, capsys):
    from boe_eval.analysis import report

    common = {"model": "m", "model_path": "/m", "task": "t", "lm_eval_task": "t", "primary_metric": "exact_match",
              "gen_length": 8, "block_length": 8, "temperature": 0.0, "early_stop": False, "sampler": "confidence",
              "variant": "confidence", "dtype": "float32", "seed": 1, "limit": 2, "nfe": 8.0, "budget_axis": "nfe"}
    cids = []
    for budget in (4, 8):
        fields = {**common, "steps": budget, "budget": budget}
        cid = cell_id(fields)
        rows = [{"row_type": "example", **fields, "cell_id": cid, "doc_id": i, "score": 1.0} for i in range(2)]
        rows.append({"row_type": "summary", **fields, "cell_id": cid, "n_examples": 2, "score": 1.0,
                     "forwards": 8.0, "backwards": 0.0, "forward_equivalents": 8.0, "wall_time_s": 1.0,
                     "sweep.placement": "budget", "sweep.knob": "steps", "sweep.knob_value": budget})
        write_cell(tmp_path, cid, rows)
        cids.append(cid)
    damaged = tmp_path / "rows" / f"{cids[0]}.jsonl"
    damaged.write_bytes(damaged.read_bytes()[:-30])  # cut mid-line
    assert report.main([str(tmp_path), "--no-plot"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"boe-report: warning: damaged result file {str(damaged)!r} (truncated mid-line (no final "
                   "newline)): skipped (a rerun of its sweep recomputes it)"]
    assert len(__import__("pandas").read_csv(tmp_path / "points.csv")) == 1
    damaged.write_bytes(b"")
    (tmp_path / "rows" / f"{cids[1]}.jsonl").write_bytes(b"")
    assert report.main([str(tmp_path), "--no-plot"]) == 2  # nothing left to report: one error line
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"boe-report: error: results folder {str(tmp_path)!r} holds no complete cells (expected verified rows/*.jsonl)")


def test_a_built_in_model_on_another_task_is_refused_before_loading():
    """`model=tiny_sudoku` alone keeps the default task (tiny_addition) and would score the Sudoku model on sums
    (0%, silently): refused in one line; the model's own task, and any task on a directory model, are accepted."""
    from boe_eval.errors import ConfigError
    from boe_eval.harness.specs import build_specs

    with pytest.raises(ConfigError, match=r"^task=tiny_addition does not fit model.path=builtin:tiny_sudoku: that model "
                                          r"was made for task=tiny_sudoku .*add task=tiny_sudoku"):
        build_specs(compose(["model=tiny_sudoku", "sampler=confidence"]))
    [(spec, _)] = build_specs(compose(["model=tiny_sudoku", "task=tiny_sudoku", "sampler=confidence"]))
    assert (spec.model_path, spec.task) == ("builtin:tiny_sudoku", "tiny_sudoku")
    with pytest.raises(ConfigError, match="made for task=oracle_sudoku4"):
        build_specs(compose(["model=oracle_sudoku4", "task=tiny_sudoku", "sampler=confidence"]))
