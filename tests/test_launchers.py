"""Cluster sweeps (issue 8): Hydra's submitit launchers. A 2-cell multirun through the local
submitit executor gives the rows of the plain run; the SLURM launcher config renders an sbatch
script with the overridable partition, GPUs per task and time limit (a dry run: nothing submitted)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from boe_eval.store import read_rows

TEST_CONFIGS = Path(__file__).parent / "configs"
TOY_TASKS = str(Path(__file__).parent / "lm_tasks")
os.environ.setdefault("BOE_TEST_TASKS", TOY_TASKS)
TIMING_FIELDS = {"wall_time_s", "decode_time_s", "git_commit"}  # commit: the shared tree may move on
DISTRIBUTED_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def base(model_dir: str) -> list[str]:
    return [f"hydra.searchpath=[file://{TEST_CONFIGS}]", "model=tiny_random", "task=toy_copy",
            f"model.path={model_dir}", "plot=false", "+progress=false", "limit=3", "+threads=1"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)


def comparable(rows: list[dict]) -> list[dict]:
    keep = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]
    return sorted(keep, key=lambda r: (r["sampler"], r["row_type"], r.get("doc_id") or -1))


@pytest.mark.slow
def test_two_cell_multirun_with_the_local_submitit_launcher(tiny_bert_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_VARIABLES and not k.startswith("SUBMITIT_")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", BOE_TEST_TASKS=TOY_TASKS, OMP_NUM_THREADS="1")
    exe = str(Path(sys.executable).with_name("boe-eval"))
    sweep_dir = tmp_path / "multi"
    proc = subprocess.run([exe, "-m", "hydra/launcher=local", f"hydra.sweep.dir={sweep_dir}",
                           "sampler=confidence,margin", *base(tiny_bert_dir)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted(sweep_dir.rglob("*_log.*")))
    assert proc.returncode == 0, proc.stderr[-3000:] + logs
    # each cell ran as its own submitit job (its pickled result and logs are in .submitit/)
    job_results = sorted(p.name for p in (sweep_dir / ".submitit").rglob("*_result.pkl"))
    assert len(job_results) == 2, logs
    rows = read_rows(sweep_dir)
    assert sorted({r["sampler"] for r in rows}) == ["confidence", "margin"]
    assert len(rows) == 2 * (3 + 1)
    # the same cells run in this process give the same rows
    from boe_eval.harness.cli import run_job

    for sampler in ("confidence", "margin"):
        run_job(compose([*base(tiny_bert_dir), f"sampler={sampler}", f"output_dir={tmp_path / 'plain'}"]))
    assert comparable(rows) == comparable(read_rows(tmp_path / "plain"))


def test_slurm_launcher_dry_run_renders_the_overridden_fields(tmp_path, monkeypatch):
    """Builds the SLURM executor exactly as hydra-submitit-launcher does and renders the sbatch
    script it would submit; `srun` is faked on PATH so submitit accepts this machine."""
    import submitit
    from hydra.utils import instantiate

    fake = tmp_path / "bin" / "srun"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")

    cfg = compose([f"hydra.searchpath=[file://{TEST_CONFIGS}]", "model=tiny_random", "task=toy_copy",
                   "model.path=/unused", "hydra/launcher=slurm", "hydra.launcher.partition=h200",
                   "hydra.launcher.gpus_per_task=2", "hydra.launcher.timeout_min=90",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    rendered: list[str] = []

    class DryRun(Exception):
        pass

    real_executor = submitit.AutoExecutor

    def capturing_executor(*args, **kwargs):
        executor = real_executor(*args, **kwargs)

        def map_array(fn, *iterables):
            slurm = executor._executor
            rendered.append(slurm._make_submission_file_text("python -u -m submitit.core._submit <folder>", "dry"))
            raise DryRun

        executor.map_array = map_array
        return executor

    monkeypatch.setattr(submitit, "AutoExecutor", capturing_executor)
    with pytest.raises(DryRun):
        launcher.launch([["sampler=confidence"], ["sampler=margin"]], initial_job_idx=0)
    script = rendered[0]
    for line in ("#SBATCH --partition=h200", "#SBATCH --gpus-per-task=2", "#SBATCH --time=90",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=64GB", "#SBATCH --job-name=boe-eval",
                 "export HF_HUB_OFFLINE=1"):
        assert line in script, f"{line!r} not in the rendered script:\n{script}"
    assert str(tmp_path / "sweep" / ".submitit") in script
