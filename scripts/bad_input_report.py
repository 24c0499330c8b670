#!/usr/bin/env python
"""Run each bad input of issue 8 through the real `boe-eval` console script and print a markdown
table: the input, the message printed (last stderr line), the exit code, and whether any result
row file was written.

    python scripts/bad_input_report.py            # ~2-4 minutes on 2 CPU cores
    python scripts/bad_input_report.py --only seed

Every case runs on a tiny random BERT built in a temporary folder and the test task
`tests/lm_tasks/toy_copy` (gen_length = steps = block_length = 8), so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIGS = REPO / "tests" / "configs"
TOY_TASKS = REPO / "tests" / "lm_tasks"

MISSING_DATA_TASK = """task: toy_missing_data
custom_dataset: !function utils.load
test_split: test
output_type: generate_until
doc_to_text: "copy:{{source}}="
doc_to_target: "{{source}}"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
MISSING_DATA_UTILS = """from boe_eval.harness.task_data import local_dataset


def load(**kwargs):
    return local_dataset(__file__, {"test": "data/test.jsonl"})
"""


def build_fixtures(root: Path) -> dict[str, str]:
    """A tiny random masked LM, damaged copies of it, and a task whose data file is missing."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from boe_eval.tiny.tokenizer import build_char_tokenizer

    torch.manual_seed(0)
    tokenizer = build_char_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id)
    model = root / "model"
    BertForMaskedLM(config).save_pretrained(model)
    tokenizer.save_pretrained(model)
    paths = {"model": str(model)}
    for name in ("no_config", "bad_json", "truncated_weights", "no_weights"):
        shutil.copytree(model, root / name)
        paths[name] = str(root / name)
    (root / "no_config" / "config.json").unlink()
    (root / "bad_json" / "config.json").write_text('{"model_type": "bert",')
    weights = root / "truncated_weights" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (root / "no_weights" / "model.safetensors").unlink()
    task = root / "tasks" / "toy_missing_data"
    task.mkdir(parents=True)
    (task / "toy_missing_data.yaml").write_text(MISSING_DATA_TASK)
    (task / "utils.py").write_text(MISSING_DATA_UTILS)
    paths["tasks"] = str(root / "tasks")
    return paths


def cases(paths: dict[str, str]) -> list[tuple[str, list[str]]]:
    """(what is bad, boe-eval arguments) — the arguments are added after the base overrides."""
    from boe_eval.samplers import SAMPLERS

    out = [
        ("unknown sampler (config group)", ["sampler=nope"]),
        ("unknown sampler (name)", ["sampler=confidence", "sampler.name=nope"]),
        ("unknown task (config group)", ["task=nope"]),
        ("unknown lm-eval task", ["task.lm_eval_task=nope_task"]),
        ("unknown model (config group)", ["model=nope"]),
        ("steps = 0", ["steps=0"]),
        ("negative gen_length", ["gen_length=-8", "steps=4", "block_length=null"]),
        ("block_length not dividing gen_length", ["block_length=3"]),
        ("steps > gen_length", ["steps=16"]),
        ("steps not a multiple of the blocks", ["gen_length=16", "block_length=4", "steps=6"]),
        ("steps not a number", ["steps=abc"]),
        ("negative temperature", ["temperature=-0.5"]),
        ("limit = 0", ["limit=0"]),
        ("batch_size = 0", ["batch_size=0"]),
        ("negative seed", ["seed=-1"]),
        ("unknown dtype", ["model.dtype=float64"]),
        ("unknown device", ["model.device=gpu"]),
        ("missing model directory", ["model.path=/no/such/model"]),
        ("model directory without config.json", [f"model.path={paths['no_config']}"]),
        ("corrupt config.json", [f"model.path={paths['bad_json']}"]),
        ("truncated weights file", [f"model.path={paths['truncated_weights']}"]),
        ("model directory without weights", [f"model.path={paths['no_weights']}"]),
        ("missing data file", ["task.lm_eval_task=toy_missing_data", f"task.include_paths=[{paths['tasks']}]"]),
        ("primary metric the task does not report", ["task.primary_metric=bleu"]),
        ("unknown sampler parameter", ["sampler=confidence", "+sampler.params.bogus=1"]),
        ("misspelt setting", ["stesp=8"]),
        ("unparsable override", ["steps=[1"]),
        ("a grid with one bad cell (nothing runs)", ["-m", "sampler=confidence,nope"]),
        ("a grid with one inconsistent cell", ["-m", "steps=4,16"]),
    ]
    if (REPO / "configs" / "sampler" / "boe.yaml").is_file():
        out += [(f"BoE rho = {rho}", ["sampler=boe", f"sampler.params.rho={rho}"]) for rho in ("0", "1.5", "-0.25", "abc")]
    elif "boe" in SAMPLERS:
        out += [(f"BoE rho = {rho}", ["sampler=confidence", "sampler.name=boe", f"+sampler.params.rho={rho}"])
                for rho in ("0", "1.5", "-0.25", "abc")]
    else:
        out.append(("BoE rho = 1.5 (BoE not registered yet)",
                    ["sampler=confidence", "sampler.name=boe", "+sampler.params.rho=1.5"]))
    return out


def run_case(args: list[str], paths: dict[str, str], work: Path) -> tuple[str, int, int, float]:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    base = [f"hydra.searchpath=[file://{TEST_CONFIGS}]", "model=tiny_random", "task=toy_copy",
            f"model.path={paths['model']}", f"output_dir={out}", "plot=false", "+progress=false",
            f"hydra.run.dir={work / 'hydra'}", f"hydra.sweep.dir={work / 'multirun'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "BOE_TEST_TASKS": str(TOY_TASKS),
           "OMP_NUM_THREADS": "1"}
    exe = str(Path(sys.executable).with_name("boe-eval"))
    start = time.perf_counter()
    proc = subprocess.run([exe, *flags, *base, *overrides], capture_output=True, text=True, env=env, cwd=work,
                          timeout=600)
    elapsed = time.perf_counter() - start
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    message = lines[-1] if lines else "(no message)"
    rows = len(list(out.rglob("rows/*.jsonl"))) + len(list((work / "multirun").rglob("rows/*.jsonl")))
    shutil.rmtree(work / "multirun", ignore_errors=True)
    return message, proc.returncode, rows, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the cases whose description contains this text")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="boe_bad_input_") as tmp:
        root = Path(tmp)
        paths = build_fixtures(root)
        selected = [c for c in cases(paths) if not opts.only or opts.only in c[0]]
        print("| bad input | arguments | message printed | exit code | row files written | s |")
        print("|---|---|---|---|---|---|")
        for what, args in selected:
            message, code, rows, elapsed = run_case(args, paths, root)
            shown = " ".join(args).replace(tmp, "<tmp>")
            message = message.replace(tmp, "<tmp>").replace("|", "\\|")
            print(f"| {what} | `{shown}` | `{message}` | {code} | {rows} | {elapsed:.1f} |", flush=True)


if __name__ == "__main__":
    main()
