#!/usr/bin/env python
"""Run each bad input of issues 8 and 12 through the real `boe-eval` console script and print a
markdown table: the input, the message printed (last stderr line), the exit code, how many lines
were printed to stderr (1 = the one-line error, no traceback), how many result row files were
written, and how many temporary files were left behind.

    python scripts/bad_input_report.py            # ~2-4 minutes on 2 CPU cores
    python scripts/bad_input_report.py --only seed output_dir

Every case runs on a tiny random BERT built in a temporary folder and the test task
`tests/lm_tasks/toy_copy` (gen_length = steps = block_length = 8), so nothing is downloaded. The full
disk is simulated (every write under the output folder raises ENOSPC, `FULL_DISK`); the read-only
folder is real (`chattr +i` as root, mode 0555 otherwise).
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


MALFORMED_TASK = """task: toy_broken
dataset_path: json
output_type: generate_until
doc_to_text: "copy:{{source}}=
  metric_list: [unclosed
"""
#: the real `boe-eval` entry point on a disk that is full: every write of a file under the output
#: folder fails with ENOSPC (files are created, nothing can be written into them)
FULL_DISK = """import errno, os, sys

OUT = os.environ["BOE_FULL_DISK_UNDER"]
_fdopen = os.fdopen


class _Full:
    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def fdopen(fd, *args, **kwargs):
    fh = _fdopen(fd, *args, **kwargs)
    return _Full(fh) if os.readlink(f"/proc/self/fd/{fd}").startswith(OUT) else fh


os.fdopen = fdopen
from boe_eval.harness.cli import main

sys.argv[0] = "boe-eval"
main()
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
    shutil.copytree(model, root / "no_tokenizer")
    (root / "no_tokenizer" / "tokenizer.json").unlink()
    paths["no_tokenizer"] = str(root / "no_tokenizer")
    task = root / "tasks" / "toy_missing_data"
    task.mkdir(parents=True)
    (task / "toy_missing_data.yaml").write_text(MISSING_DATA_TASK)
    (task / "utils.py").write_text(MISSING_DATA_UTILS)
    paths["tasks"] = str(root / "tasks")
    bad_yaml = root / "bad_yaml_tasks" / "toy_broken"
    bad_yaml.mkdir(parents=True)
    (bad_yaml / "toy_broken.yaml").write_text(MALFORMED_TASK)
    paths["bad_yaml_tasks"] = str(root / "bad_yaml_tasks")
    (root / "a_file").write_text("not a folder\n")
    paths["a_file"] = str(root / "a_file")
    (root / "read_only").mkdir()
    paths["read_only"] = str(root / "read_only")
    (root / "full_disk.py").write_text(FULL_DISK)
    paths["full_disk"] = str(root / "full_disk.py")
    return paths


def make_read_only(folder: str, on: bool) -> None:
    """A folder nobody may write into, root included (root ignores mode bits: the immutable flag)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if on else "-i", folder], check=True)
    else:
        os.chmod(folder, 0o555 if on else 0o755)


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
        # issue 12: environment failures and inputs that ran with another value or failed obscurely
        ("full disk (every write under output_dir fails with ENOSPC)", ["@full_disk"]),
        ("read-only output directory", [f"output_dir={paths['read_only']}", "@read_only"]),
        ("output_dir pointing at a file", [f"output_dir={paths['a_file']}"]),
        ("output_dir inside a file", [f"output_dir={paths['a_file']}/sub"]),
        ("output_dir = ''", ["output_dir=''"]),
        ("model.device=cuda without a GPU", ["model.device=cuda"]),
        ("limit >= 2**63", ["limit=9223372036854775808"]),
        ("5000-character sampler name (config group)", ["sampler=" + "x" * 5000]),
        ("5000-character sampler name (sampler.name)", ["sampler=confidence", "sampler.name=" + "x" * 5000]),
        ("block_length = 0", ["block_length=0"]),
        ("negative block_length", ["block_length=-8"]),
        ("model directory without tokenizer.json", [f"model.path={paths['no_tokenizer']}"]),
        ("malformed task YAML", ["task.lm_eval_task=toy_broken", f"task.include_paths=[{paths['bad_yaml_tasks']}]"]),
        ("non-ASCII value (unquoted)", ["sampler=c\u00f6nfidence"]),
        ("non-ASCII value (quoted)", ["sampler=confidence", "sampler.name='c\u00f6nfidence'"]),
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


def run_case(args: list[str], paths: dict[str, str], work: Path) -> tuple[str, int, bool, int, int, float]:
    """Returns (last stderr line, exit code, whether a traceback was printed, row files written, temp
    files left, seconds)."""
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    modes = [a for a in args if a.startswith("@")]
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith(("-", "@"))]
    own_output = any(o.startswith("output_dir=") for o in overrides)
    base = [f"hydra.searchpath=[file://{TEST_CONFIGS}]", "model=tiny_random", "task=toy_copy",
            f"model.path={paths['model']}", *([] if own_output else [f"output_dir={out}"]), "plot=false",
            "+progress=false", f"hydra.run.dir={work / 'hydra'}", f"hydra.sweep.dir={work / 'multirun'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "BOE_TEST_TASKS": str(TOY_TASKS),
           "OMP_NUM_THREADS": "1"}
    command = [str(Path(sys.executable).with_name("boe-eval"))]
    if "@full_disk" in modes:
        command = [sys.executable, paths["full_disk"]]
        env["BOE_FULL_DISK_UNDER"] = str(out)
    if "@read_only" in modes:
        make_read_only(paths["read_only"], True)
    start = time.perf_counter()
    try:
        proc = subprocess.run([*command, *flags, *base, *overrides], capture_output=True, text=True, env=env,
                              cwd=work, timeout=600)
    finally:
        if "@read_only" in modes:
            make_read_only(paths["read_only"], False)
    elapsed = time.perf_counter() - start
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    message = lines[-1] if lines else "(no message)"
    traceback = any(line.startswith("Traceback (most recent call last)") for line in lines)
    searched = [out, work / "multirun", Path(paths["read_only"])]
    rows = sum(len(list(d.rglob("rows/*.jsonl"))) for d in searched)
    temps = sum(len([p for p in d.rglob(".*") if p.is_file()]) for d in searched)
    shutil.rmtree(work / "multirun", ignore_errors=True)
    return message, proc.returncode, traceback, rows, temps, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run only the cases whose description contains one of these texts")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="boe_bad_input_") as tmp:
        root = Path(tmp)
        paths = build_fixtures(root)
        selected = [c for c in cases(paths) if not opts.only or any(text in c[0] for text in opts.only)]
        print("| bad input | arguments | message printed (last stderr line) | exit code | traceback | "
              "row files written | temp files left | s |")
        print("|---|---|---|---|---|---|---|---|", flush=True)
        for what, args in selected:
            message, code, traceback, rows, temps, elapsed = run_case(args, paths, root)
            n_lines = "yes" if traceback else "no"
            shown = " ".join(_short(a) for a in args if not a.startswith("@")).replace(tmp, "<tmp>")
            message = message.replace(tmp, "<tmp>").replace("|", "\\|")
            print(f"| {what} | `{shown}` | `{message}` | {code} | {n_lines} | {rows} | {temps} | {elapsed:.1f} |",
                  flush=True)


def _short(arg: str) -> str:
    return arg if len(arg) <= 80 else f"{arg[:40]}...({len(arg)} characters)"


if __name__ == "__main__":
    main()
