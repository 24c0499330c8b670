"""Data parallel with accelerate (issue 8): two processes under `accelerate launch` (gloo, CPU) give
exactly the rows of one process, except timing fields; single-process collectives are no-ops."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from boe_eval.harness.distributed import DataParallel, data_parallel
from boe_eval.store import read_rows

TEST_CONFIGS = Path(__file__).parent / "configs"
TOY_TASKS = Path(__file__).parent / "lm_tasks"
TIMING_FIELDS = {"wall_time_s", "decode_time_s"}
DISTRIBUTED_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def clean_environment() -> dict[str, str]:
    """The environment for a subprocess that must start as a plain single-process run."""
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_VARIABLES and not k.startswith("SUBMITIT_")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
SOURCES = ["ab", "cde", "x", "hello", "zz", "pqr", "mn", "wxyz"]

TASK_YAML = """task: toy_copy8
custom_dataset: !function utils.load
test_split: test
output_type: generate_until
doc_to_text: "copy:{{source}}="
doc_to_target: "{{source}}"
generation_kwargs:
  until: ["."]
  max_gen_toks: 8
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

TASK_UTILS = f"""import datasets

SOURCES = {SOURCES!r}


def load(**kwargs):
    return datasets.DatasetDict({{"test": datasets.Dataset.from_list([{{"source": s}} for s in SOURCES])}})


def process_results(doc, results):
    return {{"exact_match": float(results[0].strip() == doc["source"])}}
"""


def write_toy_task(root: Path) -> Path:
    """An 8-example copy task (tests/lm_tasks/toy_copy has 6)."""
    folder = root / "toy_copy8"
    folder.mkdir(parents=True)
    (folder / "toy_copy8.yaml").write_text(TASK_YAML)
    (folder / "utils.py").write_text(TASK_UTILS)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def without_timing(rows: list[dict]) -> list[dict]:
    """Rows minus timing fields and the checkout's commit (the working tree may get a new commit
    between the two runs; both rows must still record one)."""
    assert all(row["git_commit"] for row in rows)
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS | {"git_commit"}} for row in rows]


def test_single_process_collectives_are_noops_and_never_touch_an_accelerator():
    dp = data_parallel()
    assert (dp.rank, dp.world_size, dp.accelerator, dp.enabled) == (0, 1, None, False)
    # LLaDA's adapter calls wait_for_everyone() on a None accelerator; ours must not, even when a
    # launcher variable says WORLD_SIZE > 1 but no accelerator was created
    for state in (dp, DataParallel(rank=0, world_size=2, accelerator=None)):
        state.barrier()
        assert state.gather_object({"a": 1}) == [{"a": 1}]
        assert state.broadcast_object(5) == 5
        tensor = torch.arange(3)
        assert state.all_gather(tensor) is tensor
        assert state.place("cuda") == "cuda" and state.place("cpu") == "cpu"


def test_submitit_tasks_of_one_job_become_one_data_parallel_run(monkeypatch):
    """hydra-submitit-launcher with tasks_per_node=2: task 1 of job 77 gets rank 1 of 2 (the values
    submitit's local executor sets for its second task), GPUs are left visible."""
    from boe_eval.harness.distributed import export_submitit_environment, launched_world_size

    for name in DISTRIBUTED_VARIABLES:
        # setenv first so that monkeypatch records the original state and restores it afterwards,
        # whatever export_submitit_environment writes (a leaked WORLD_SIZE would hang later runs)
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    local = {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "77", "SUBMITIT_LOCAL_NTASKS": "2",
             "SUBMITIT_LOCAL_JOB_NUM_NODES": "1", "SUBMITIT_LOCAL_NODEID": "0", "SUBMITIT_LOCAL_GLOBALID": "1",
             "SUBMITIT_LOCAL_LOCALID": "1"}
    for name, value in local.items():
        monkeypatch.setenv(name, value)
    export_submitit_environment()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("1", "2", "1")
    assert os.environ["MASTER_ADDR"] and os.environ["MASTER_PORT"].isdigit()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" and launched_world_size() == 2
    # a single-task job stays a plain single-process run
    for name in DISTRIBUTED_VARIABLES:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "1")
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "0")
    monkeypatch.setenv("SUBMITIT_LOCAL_LOCALID", "0")
    export_submitit_environment()
    assert "WORLD_SIZE" not in os.environ and launched_world_size() == 1


def test_adapter_reports_single_process_rank_and_gathers_nothing(tiny_bert):
    from boe_eval.harness.lm_adapter import BoeLM

    lm = BoeLM(denoiser=tiny_bert, progress=False)
    assert (lm.rank, lm.world_size) == (0, 1)
    lm.barrier()
    assert lm.gather_object("x") == ["x"]


def _run(cmd: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    return elapsed, proc.stderr


@pytest.mark.slow
def test_two_accelerate_processes_give_the_rows_of_one_process(tiny_bert_dir, tmp_path):
    tasks = write_toy_task(tmp_path / "tasks")
    env = {**clean_environment(), "BOE_TEST_TASKS": str(TOY_TASKS)}
    common = [
        f"hydra.searchpath=[file://{TEST_CONFIGS}]", "model=tiny_random", "task=toy_copy",
        f"model.path={tiny_bert_dir}", "task.name=toy_copy8", "task.lm_eval_task=toy_copy8",
        f"task.include_paths=[{tasks}]", "sampler=compare_greedy", "temperature=0.7", "batch_size=3",
        "plot=false", "+progress=false", "+threads=1",
    ]
    bindir = Path(sys.executable).parent
    one_s, _ = _run([str(bindir / "boe-eval"), f"output_dir={tmp_path / 'one'}", f"hydra.run.dir={tmp_path / 'h1'}",
                     *common], env, tmp_path)
    # accelerate 1.x's `launch --cpu --num_processes 2` starts one process (it needs an MPI hostfile for
    # more); `--multi_gpu` uses torch.distributed.run, and without CUDA our Accelerator picks gloo
    launch = [str(bindir / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
              "-m", "boe_eval.harness.cli"]
    two_s, log = _run([*launch, f"output_dir={tmp_path / 'two'}", f"hydra.run.dir={tmp_path / 'h2'}", *common],
                      env, tmp_path)
    print(f"one process: {one_s:.1f} s; accelerate launch --multi_gpu --num_processes 2 (CPU, gloo): {two_s:.1f} s")
    # both ranks decoded a share of the 8 documents (lm-eval shards rank, rank + 2, ...)
    for rank in (0, 1):
        assert f"rank {rank} of 2: 4 requests" in log
    one, two = read_rows(tmp_path / "one"), read_rows(tmp_path / "two")
    assert len(one) == 4 * (8 + 1)  # 4 greedy samplers x (8 examples + summary)
    assert sorted(r["doc_id"] for r in one if r["row_type"] == "example" and r["sampler"] == "random") == list(range(8))
    assert json.dumps(without_timing(one), sort_keys=True) == json.dumps(without_timing(two), sort_keys=True)
    # rank 1 wrote nothing: one row file per cell, all written by rank 0
    assert sorted(p.name for p in (tmp_path / "two" / "rows").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one" / "rows").iterdir())
