"""lm-eval adapter, Hydra entry point and result rows, on a random tiny model and a toy task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from boe_eval.decoding import DecodeConfig, generate_batched
from boe_eval.harness.results import cell_id, read_rows, wilson_interval, write_cell
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
    from boe_eval.decoding import ConfigError
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
    from boe_eval.decoding import ConfigError
    from boe_eval.harness.cli import build_specs

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
    from boe_eval.harness.cli import model_label

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
