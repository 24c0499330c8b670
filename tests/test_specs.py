"""The typed run spec (issue 13 item 5): a composed config becomes one `JobSpec` (validated once), its
cells are `CellSpec`s derived from it, the store key is a function of the cell spec's identity and
every setting column of a row is the cell spec's."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from boe_eval.harness.schema import JobSpec, validate_job
from boe_eval.harness.specs import CellSpec, build_specs, cell_spec
from boe_eval.store import cell_id

TEST_CONFIGS = Path(__file__).parent / "configs"
os.environ.setdefault("BOE_TEST_TASKS", str(Path(__file__).parent / "lm_tasks"))


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def base(model_dir: str, *extra: str) -> list[str]:
    return [f"hydra.searchpath=[file://{TEST_CONFIGS}]", "model=tiny_random", "task=toy_copy",
            f"model.path={model_dir}", "sampler=confidence", "plot=false", "+progress=false", *extra]


def test_a_composed_config_round_trips_to_the_spec(tiny_bert_dir):
    """Every value of the composed config lands typed in the spec, and the spec written back as a
    config validates to an equal spec (nothing is lost or re-derived differently)."""
    cfg = compose(base(tiny_bert_dir, "temperature=0.5", "limit=3", "seed=7", "batch_size=5", "early_stop=true",
                       "model.dtype=bfloat16"))
    job = validate_job(cfg)
    assert isinstance(job, JobSpec)
    assert (job.temperature, job.limit, job.seed, job.batch_size, job.early_stop) == (0.5, 3, 7, 5, True)
    assert (job.model.path, job.model.dtype, job.task.lm_eval_task) == (tiny_bert_dir, "bfloat16", "toy_copy")
    assert (job.gen_length, job.steps, job.block_length) == (cfg.gen_length, cfg.steps, cfg.block_length)
    assert job.sampler.name == "confidence" and job.sampler_label == "confidence"
    assert isinstance(job.temperature, float) and isinstance(job.model.chat_template, bool)
    again = validate_job(OmegaConf.structured(job))
    assert again == job


@pytest.mark.parametrize("override", ["batch_size=null", "temperature=null", "seed=null", "model.dtype=null"])
def test_null_for_a_setting_without_a_null_meaning_is_refused_not_replaced_by_its_default(tiny_bert_dir, override):
    from boe_eval.errors import ConfigError

    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}=null is invalid: it must be "):
        validate_job(compose(base(tiny_bert_dir, override)))


def test_a_comparison_config_gives_one_cell_per_member_and_the_cells_share_the_jobs_settings(tiny_bert_dir):
    job = validate_job(compose(base(tiny_bert_dir, "sampler=compare_greedy", "limit=2", "seed=3")))
    cells = build_specs(job)
    assert [spec.sampler for spec, _ in cells] == job.sampler.members
    for spec, sampler in cells:
        assert (spec.limit, spec.seed, spec.gen_length, spec.steps) == (2, 3, job.gen_length, job.steps)
        assert spec.sampler_params == sampler.params() and spec.label is None


def _key(job: JobSpec, **change) -> str:
    spec, _ = cell_spec(dataclasses.replace(job, **{k: v for k, v in change.items() if k != "params"}),
                        job.sampler.name, change.get("params", job.sampler.params))
    return cell_id(spec.identity())


def test_the_cell_key_is_stable_for_equal_specs_and_differs_for_different_ones(tiny_bert_dir):
    job = validate_job(compose(base(tiny_bert_dir, "sampler=threshold")))
    twin = validate_job(compose(base(tiny_bert_dir, "sampler=threshold")))
    assert job == twin and _key(job) == _key(twin)
    [(spec, _)] = build_specs(job)
    assert cell_id(spec.identity()) == _key(job)  # build_specs and cell_spec agree
    # an experiment setting changes the key...
    changed = {_key(job, seed=job.seed + 1), _key(job, steps=job.steps // 2), _key(job, temperature=0.7),
               _key(job, limit=2), _key(job, early_stop=True),
               _key(job, model=dataclasses.replace(job.model, dtype="bfloat16")),
               _key(job, params={"threshold": 0.5})}
    assert _key(job) not in changed and len(changed) == 7
    # ...a wall-clock setting does not (a rerun with another batch size reuses the cell)
    assert _key(job, batch_size=job.batch_size + 3) == _key(job)
    assert _key(job, progress=False, plot=True, threads=1) == _key(job)


def test_every_setting_column_of_a_row_comes_from_the_cell_spec(tiny_bert_dir, tiny_bert):
    """The rows of a cell carry every column of `CellSpec.columns()` with the spec's value; the other
    columns are measured (metrics, compute), the loaded model's facts or provenance."""
    from boe_eval.harness.evaluate import evaluate_cell
    from boe_eval.provenance import runtime_facts
    from boe_eval.samplers import build_sampler

    tasks = str(Path(__file__).parent / "lm_tasks")
    spec = CellSpec(model_name="a name", model_path=tiny_bert_dir, sampler="margin", sampler_params={},
                    task="copy", lm_eval_task="toy_copy", primary_metric="exact_match", gen_length=8, steps=4,
                    block_length=4, temperature=0.0, seed=11, limit=2, batch_size=2, include_paths=[tasks],
                    label="a label", extra={"budget": 4, "budget_axis": "nfe"})
    sampler = build_sampler("margin")
    spec.sampler_params = sampler.params()
    rows = evaluate_cell(spec, tiny_bert, sampler, progress=False)
    assert len(rows) == 3
    columns = spec.columns()
    assert columns["variant"] == "a label" and columns["budget"] == 4 and columns["limit"] == 2
    described, facts = set(tiny_bert.describe()), set(runtime_facts())
    for row in rows:
        assert {k: row[k] for k in columns} == columns
        settings = {f.name for f in dataclasses.fields(CellSpec)} | {f"sampler.{k}" for k in spec.sampler_params}
        from_elsewhere = {k for k in row if k in settings and k not in columns}
        # the loop's per-example layout echo and the model's own facts are the only setting-named columns
        assert from_elsewhere <= {"gen_length", "steps", "block_length"} | described | facts, from_elsewhere
