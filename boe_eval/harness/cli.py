"""`boe-eval`: the Hydra entry point. Composes model + sampler + task, validates everything before
loading a model, evaluates each sampler through lm-eval, writes tidy rows, prints a table and a plot.

    boe-eval                                  # default job: compute-matched sweep (configs/sweep/default.yaml)
    boe-eval sampler=compare_greedy           # one job: built-in model, greedy samplers compared
    boe-eval sampler=entropy task=countdown   # one sampler
    boe-eval -m sampler=confidence,margin     # Hydra multirun
    boe-eval sweep=<name>                     # a compute-matched sweep (configs/sweep/, harness/sweep.py)
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from boe_eval.errors import ConfigError  # noqa: E402  (torch-free: `boe-eval --help` imports no torch)
from boe_eval.harness.specs import build_specs  # noqa: E402
from boe_eval.provenance import REPO_ROOT  # noqa: E402

CONFIG_DIR = Path(os.environ.get("BOE_EVAL_CONFIGS", REPO_ROOT / "configs"))
log = logging.getLogger("boe_eval")
#: `${boe_root:}` in the configs: the project folder (the parent of the configs folder in use), so the
#: default output folders (`outputs/...`, `results/<sweep>`) do not depend on the working directory
if not OmegaConf.has_resolver("boe_root"):
    OmegaConf.register_new_resolver("boe_root", lambda: str(CONFIG_DIR.resolve().parent))


def run_job(cfg: DictConfig) -> Path:
    """Evaluate every sampler of the job; returns the results directory."""
    import torch

    from boe_eval.store import write_text_atomic
    from boe_eval.analysis.tables import format_summary_table
    from boe_eval.harness.distributed import data_parallel
    from boe_eval.harness.evaluate import evaluate_cell
    from boe_eval.analysis.load import PoolingError, check_store_accepts, planned_summary
    from boe_eval.harness.schema import check_device_available
    from boe_eval.store import (
        cell_id,
        cell_path,
        check_output_dir,
        claim_cell,
        ensure_results_dir,
        read_cell,
        read_rows,
        write_cell,
    )
    from boe_eval.models.loading import load_denoiser

    threads = cfg.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    results_dir = check_output_dir(cfg.output_dir)
    # data parallel (`accelerate launch`): every rank decodes its share, rank 0 alone writes rows
    dp = data_parallel()
    if dp.is_main:
        ensure_results_dir(results_dir)  # read-only folder, a file in the way: one line, no model load
    specs = build_specs(cfg)
    check_device_available(specs[0][0].device)  # model.device=cuda without a GPU: one line, no fallback
    if dp.is_main:
        print(f"[boe-eval] output_dir: {results_dir}")
        try:
            check_store_accepts(results_dir, [planned_summary(spec, cell_id(spec.identity())) for spec, _ in specs])
        except PoolingError as err:
            raise ConfigError(f"output_dir={str(results_dir)!r} cannot take this run: {err}") from None
    denoiser = None
    summaries = []
    for spec, sampler in specs:
        cid = cell_id(spec.identity())
        # a per-cell lock: a concurrent job computing the same cell is waited for, never duplicated
        state, lock = claim_cell(results_dir, cid) if dp.is_main else (None, None)
        if dp.broadcast_object(state) == "complete":
            if dp.is_main:
                print(f"[boe-eval] {spec.sampler}: already complete ({cell_path(results_dir, cid)}), skipped")
        else:
            try:
                if denoiser is None:
                    denoiser = load_denoiser(spec.model_path, dtype=spec.dtype, device=dp.place(spec.device))
                progress = bool(cfg.get("progress", True)) and dp.is_main
                samples_prefix = results_dir / "samples" / cid if cfg.get("log_samples", False) else None
                rows = evaluate_cell(spec, denoiser, sampler, progress=progress, samples_prefix=samples_prefix)
                if dp.is_main:
                    for row in rows:
                        row["cell_id"] = cid
                    write_cell(results_dir, cid, rows, identity=spec.identity())
            finally:
                if lock is not None:
                    lock.release()
        if dp.is_main:
            summaries.extend(r for r in read_cell(results_dir, cid) if r["row_type"] == "summary")
    if not dp.is_main:
        return results_dir
    table = format_summary_table(summaries)
    print()
    print(f"model={specs[0][0].model_name} task={specs[0][0].task} metric={specs[0][0].primary_metric} "
          f"gen_length={specs[0][0].gen_length} steps={specs[0][0].steps} block_length={specs[0][0].block_length}")
    print(table)
    write_text_atomic(results_dir / "summary.md", table + "\n")
    if cfg.get("plot", True) and len(summaries) > 0:
        from boe_eval.analysis.plots import plot_score_vs_compute

        plot_path = plot_score_vs_compute(summaries, results_dir / "score_vs_nfe.png")
        print(f"[boe-eval] plot: {plot_path}")
    print(f"[boe-eval] results: {results_dir} ({len(read_rows(results_dir))} rows in {results_dir / 'rows'})")
    return results_dir


def run(cfg: DictConfig) -> Path:
    """A sweep when `sweep=<name>` is given, else one job."""
    if OmegaConf.select(cfg, "sweep", default=None) is not None:
        from boe_eval.harness.sweep import run_sweep

        return run_sweep(cfg)
    return run_job(cfg)


def fail(message: str) -> None:
    """The one line every bad input or environment failure ends with, and exit code 2."""
    print(f"boe-eval: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def _hydra_entry(cfg: DictConfig) -> None:
    from boe_eval.store import describe_os_error

    try:
        run(cfg)
    except ConfigError as err:
        fail(str(err))
    except OSError as err:  # an environment failure outside the result store (plots, reports, caches)
        fail(describe_os_error(err, err.filename or "the output folder"))


def check(cfg: DictConfig) -> None:
    """Validate one composed job without loading a model (a sweep: every one of its cells)."""
    from boe_eval.store import check_output_dir

    try:  # the default (Hydra's run folder) is only known once Hydra runs the job
        output_dir = OmegaConf.select(cfg, "output_dir", throw_on_resolution_failure=True)
    except Exception:  # noqa: BLE001  (${hydra:...} outside a Hydra run)
        output_dir = None
    else:
        check_output_dir(output_dir)  # '' or a file in the way: one line before anything runs
    if OmegaConf.select(cfg, "sweep", default=None) is not None:
        from boe_eval.harness.sweep import plan_sweep

        plan_sweep(cfg, seconds_per_forward=1.0)  # (a wall-time sweep's real calibration comes later)
    else:
        build_specs(cfg)


#: what decides a job: a command line that sets none of these runs the default sweep (the layout keys
#: too: a sweep derives its own steps, so `boe-eval steps=16` keeps meaning one job with 16 steps)
JOB_KEYS = ("sampler", "sweep", "model", "task", "steps", "gen_length", "block_length", "temperature")
DEFAULT_SWEEP = "default"


def with_default_job(argv: list[str]) -> list[str]:
    """`boe-eval` with no job override runs the default sweep (configs/sweep/default.yaml): argv plus
    `sweep=default`. Any override of a key in `JOB_KEYS` (sampler, sweep, model, task, the layout) or a
    help or config-dump flag leaves argv as it is: one job, or the sweep named."""
    if {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i"} & set(argv):
        return argv
    keys = {arg.split("=", 1)[0].lstrip("+~").split(".", 1)[0] for arg in argv if not arg.startswith("-")}
    return argv if keys & set(JOB_KEYS) else [*argv, f"sweep={DEFAULT_SWEEP}"]


def main() -> None:
    sys.argv[1:] = with_default_job(sys.argv[1:])
    if not {"--help", "-h", "--hydra-help"} & set(sys.argv[1:]):  # help needs neither pre-flight nor torch
        from boe_eval.store import print_store_warnings
        from boe_eval.harness.schema import preflight

        print_store_warnings("boe-eval")  # a damaged cell: one warning line, then it is recomputed
        # every job of the command line (each cell of a -m grid) is validated before Hydra runs any
        try:
            preflight(sys.argv[1:], CONFIG_DIR, check)
        except ConfigError as err:
            fail(str(err))
    _hydra_entry()


if __name__ == "__main__":
    main()
