"""`boe-eval`: the Hydra entry point. Composes model + sampler + task, validates everything before
loading a model, evaluates each sampler through lm-eval, writes tidy rows, prints a table and a plot.

    boe-eval                                  # default job: compute-matched sweep (configs/sweep/default.yaml)
    boe-eval sampler=compare_greedy           # one job: built-in model, greedy samplers compared
    boe-eval sampler=entropy task=countdown   # one sampler
    boe-eval -m sampler=confidence,margin     # Hydra multirun
    boe-eval sweep=<name>                     # a compute-matched sweep (configs/sweep/, harness/sweep/)
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from boe_eval.errors import ConfigError  # noqa: E402  (torch-free: `boe-eval --help` imports no torch)
from boe_eval.harness.specs import as_job, build_specs  # noqa: E402
from boe_eval.provenance import REPO_ROOT  # noqa: E402

if TYPE_CHECKING:
    from boe_eval.harness.schema import JobSpec

CONFIG_DIR = Path(os.environ.get("BOE_EVAL_CONFIGS", REPO_ROOT / "configs"))
log = logging.getLogger("boe_eval")
#: `${boe_root:}` in the configs: the project folder (the parent of the configs folder in use), so the
#: default output folders (`outputs/...`, `results/<sweep>`) do not depend on the working directory
if not OmegaConf.has_resolver("boe_root"):
    OmegaConf.register_new_resolver("boe_root", lambda: str(CONFIG_DIR.resolve().parent))


def run_job(job: JobSpec | DictConfig) -> Path:
    """Evaluate every sampler of the job (its typed spec; a composed config is validated first);
    returns the results directory."""
    import torch

    from boe_eval.store import write_text_atomic
    from boe_eval.analysis.tables import format_summary_table
    from boe_eval.harness.distributed import data_parallel
    from boe_eval.harness.evaluate import evaluate_cell
    from boe_eval.analysis.load import PoolingError, check_store_accepts, planned_summary
    from boe_eval.harness.inputs import check_device_available
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
    from boe_eval.import_cost import resume_gc_after_start_up
    from boe_eval.models.loading import load_denoiser

    job = as_job(job)
    if job.threads:
        torch.set_num_threads(job.threads)
    results_dir = check_output_dir(job.output_dir)
    # data parallel (`accelerate launch`): every rank decodes its share, rank 0 alone writes rows
    dp = data_parallel()
    if dp.is_main:
        ensure_results_dir(results_dir)  # read-only folder, a file in the way: one line, no model load
    specs = build_specs(job)
    check_device_available(specs[0][0].device)  # model.device=cuda without a GPU: one line, no fallback
    if dp.is_main:
        print(f"[boe-eval] output_dir: {results_dir}")
        try:
            check_store_accepts(results_dir, [planned_summary(spec.planned_columns(), cell_id(spec.identity())) for spec, _ in specs])
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
                    resume_gc_after_start_up()  # (boe-eval paused it for its start-up)
                    denoiser = load_denoiser(spec.model_path, dtype=spec.dtype, device=dp.place(spec.device))
                progress = job.progress and dp.is_main
                samples_prefix = results_dir / "samples" / cid if job.log_samples else None
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
    table = format_summary_table(summaries, {cid: cell_path(results_dir, cid).name for cid in
                                             {s.get("cell_id") for s in summaries} if isinstance(cid, str)})
    print()
    print(table)
    write_text_atomic(results_dir / "summary.md", table + "\n")
    from boe_eval.analysis.report import write_rows_indexes

    write_rows_indexes(results_dir)  # rows.md: which cell each file in rows/ holds
    if job.plot and len(summaries) > 0:
        from boe_eval.analysis.plots import plot_summary

        plot_path = plot_summary(summaries, results_dir)
        print(f"[boe-eval] plot: {plot_path}")
    print(f"[boe-eval] results: {results_dir} ({len(read_rows(results_dir))} rows in {results_dir / 'rows'}); "
          f"a rerun with output_dir={results_dir} skips the finished cells")
    return results_dir


def run(cfg: DictConfig) -> Path:
    """A sweep when `sweep=<name>` is given, else one job. The composed config becomes the typed
    run spec here, once (`schema.validate_job`); everything after takes the spec."""
    job = as_job(cfg)
    if job.sweep is not None:
        from boe_eval.harness.sweep import run_sweep
        from boe_eval.import_cost import resume_gc_after_start_up

        resume_gc_after_start_up()  # (a sweep loads its models itself)

        return run_sweep(job)
    return run_job(job)


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


def check(job: JobSpec) -> None:
    """Check one validated job's inputs without loading a model (a sweep: every one of its cells)."""
    from boe_eval.store import check_output_dir

    if job.output_dir is not None:  # (Hydra's run folder, the default, is only known once Hydra runs)
        check_output_dir(job.output_dir)  # '' or a file in the way: one line before anything runs
    if job.sweep is not None:
        from boe_eval.harness.sweep import plan_sweep

        plan_sweep(job, seconds_per_forward=1.0)  # (a wall-time sweep's real calibration comes later)
    else:
        from boe_eval.harness.prompt_lengths import check_prompt_lengths

        # a prompt too long for the model: here, not at its first batch (every sampler of a job decodes the same
        # prompts with the same model and gen_length, so the first spec stands for all)
        check_prompt_lengths(build_specs(job)[0][0])


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
        from boe_eval.import_cost import pause_gc_for_start_up, trim_transformers_start_up
        from boe_eval.store import print_store_warnings

        pause_gc_for_start_up()  # ~1 s of CPU: the collector rescanning the imports; back on before the model loads
        trim_transformers_start_up()  # ~2 s of CPU at start-up that decoding never uses (scikit-learn, scipy, ...)
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
