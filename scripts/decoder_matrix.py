"""Issue 15's acceptance matrix: every decoder through `boe-eval`, on the built-in model and on the tiny LLaDA and
Dream stand-ins, at cache none, prefix and dual; one table per model of sampler x cache with its status (ran, or
refused with the one line `boe-eval` printed), score, NFE, tokens processed and forward FLOPs per sequence, read
from the rows.

    python scripts/decoder_matrix.py --out results/decoder_matrix            # about 10 min on 2 busy cores

Each model is one `boe-eval -m sampler=<all> cache=<mode>` per cache mode (one process, the model loaded once per
job), with `task=tiny_addition limit=20 block_length=4` (12 answer slots in 3 blocks of 4, 6 steps, so the prefix
and dual caches differ). `boe-eval` validates every job of a grid before running any: a grid with a combination it
refuses stops in one line (exit 2) naming the sampler; that line is recorded, the sampler is taken out and the grid
run again. The stand-ins (`tests/fixtures/remote_code`: LLaDA's and Dream's interfaces, random tiny weights, seed 0)
are written to a temporary directory and loaded through `model=tiny_random model.path=...` (tests/configs). A rerun
with the same `--out` skips finished cells (the rows are the store's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

#: the decoders of issue 15, then the reference samplers
SAMPLERS = ["threshold", "factor", "wino", "dus", "prophet", "info_gain", "dvoting",
            "confidence", "margin", "entropy", "random", "eb", "boe"]
CACHES = ["none", "prefix", "dual"]
COMMON = ["task=tiny_addition", "limit=20", "block_length=4", "plot=false", "+progress=false", "+threads=1"]


def models(stand_in_dir: Path) -> dict[str, list[str]]:
    from fixtures.remote_code import make_remote_code_model

    search = f"hydra.searchpath=[file://{REPO / 'tests' / 'configs'}]"
    out = {"tiny_addition (built-in, BERT-style)": ["model=tiny_addition"]}
    for kind, label in (("llada", "LLaDA stand-in"), ("dream", "Dream stand-in")):
        path = make_remote_code_model(kind, stand_in_dir / f"{kind}_stand_in")
        out[label] = [search, "model=tiny_random", f"model.path={path}", f"model.name={kind}-stand-in"]
    return out


def run_grid(model_args: list[str], samplers: list[str], cache: str, out: Path,
             tmp: Path) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("boe-eval"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "BOE_TEST_TASKS": str(REPO / "tests" / "lm_tasks")}
    args = [exe, "-m", *model_args, *COMMON, f"sampler={','.join(samplers)}", f"cache={cache}", f"output_dir={out}",
            f"hydra.sweep.dir={tmp / 'multirun'}"]
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)


def run_model(model_args: list[str], out: Path, tmp: Path) -> dict[tuple[str, str], str]:
    """Runs every (sampler, cache) cell that `boe-eval` accepts; returns the refusal line of every other cell."""
    refused: dict[tuple[str, str], str] = {}
    for cache in CACHES:
        samplers = list(SAMPLERS)
        while samplers:
            proc = run_grid(model_args, samplers, cache, out, tmp)
            if proc.returncode == 0:
                break
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit code {proc.returncode}"
            named = re.findall(r"sampler=([a-z_]+)", last)
            culprit = next((s for s in named if s in samplers), None)
            if proc.returncode != 2 or culprit is None:
                for sampler in samplers:  # an unexpected failure: recorded for every cell not run
                    refused.setdefault((sampler, cache), f"FAILED (exit {proc.returncode}): {last}")
                break
            refused[(culprit, cache)] = last.removeprefix("boe-eval: error: ")
            samplers.remove(culprit)
    return refused


def summaries(out: Path) -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted((out / "rows").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("row_type") == "summary":
                found[(row["sampler"], row.get("cache") or "none")] = row
    return found


def table(rows: dict[tuple[str, str], dict], refused: dict[tuple[str, str], str]) -> list[str]:
    lines = ["| sampler | cache | status | exact match % | NFE | tokens processed | fwd MFLOPs | fwd FLOPs vs none |",
             "|---|---|---|---|---|---|---|---|"]
    for sampler in SAMPLERS:
        for cache in CACHES:
            row = rows.get((sampler, cache))
            if row is None:
                reason = refused.get((sampler, cache), "not run")
                lines.append(f"| {sampler} | {cache} | refused: {reason.replace('|', '/')} | | | | | |")
                continue
            base = rows.get((sampler, "none"))
            ratio = (f"{row['forward_flops'] / base['forward_flops']:.2f}"
                     if base and row.get("forward_flops") and base.get("forward_flops") else "")
            flops = f"{row['forward_flops'] / 1e6:.2f}" if row.get("forward_flops") is not None else "n/a"
            lines.append(f"| {sampler} | {cache} | ran | {100 * row['score']:.0f} | {row['nfe']:.2f} | "
                         f"{row['tokens_processed']:.1f} | {flops} | {ratio} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "decoder_matrix")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = [
        "# Issue 15's acceptance matrix: every decoder x cache on the built-in model and the LLaDA and Dream stand-ins",
        "",
        "    python scripts/decoder_matrix.py --out results/decoder_matrix",
        "",
        f"Each cell: `boe-eval sampler=<s> cache=<c> {' '.join(COMMON)}` on the model (stand-ins: "
        "`model=tiny_random model.path=<stand-in>` with tests/configs on the search path): the 20 first held-out "
        "items of the built-in carry-addition task, 12 answer slots in 3 blocks of 4, 6 steps, greedy, each sampler "
        "at its YAML defaults. Per sequence means from the summary rows: NFE, tokens processed (positions fed to "
        "the model), forward FLOPs (analytic, `boe_eval.models.flops`); the last column is forward FLOPs relative to "
        "the same sampler at cache none. A refused cell shows the one line `boe-eval` printed (exit code 2, before "
        "any model loads). The LLaDA and Dream stand-ins have random weights (`tests/fixtures/remote_code`): their "
        "scores are meaningless (0); they show that each decoder and cache runs there and what it costs.",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="decoder_matrix_") as tmp:
        for label, model_args in models(Path(tmp)).items():
            folder = out / re.sub(r"[^a-z0-9]+", "_", label.split(" (")[0].lower()).strip("_")
            refused = run_model(model_args, folder, Path(tmp))
            rows = summaries(folder)
            report += [f"## {label}", "", *table(rows, refused), ""]
            print(f"[decoder_matrix] {label}: {len(rows)} cells ran, {len(refused)} refused", flush=True)
    (out / "README.md").write_text("\n".join(report))
    print(f"[decoder_matrix] {out / 'README.md'}")


if __name__ == "__main__":
    main()
