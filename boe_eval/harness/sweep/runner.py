"""Evaluating a sweep's cells into the result store (model loaded once, cells claimed one at a time)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from boe_eval.errors import ConfigError
from boe_eval.harness.sweep.calibration import load_or_calibrate
from boe_eval.harness.sweep.config import read_sweep
from boe_eval.harness.sweep.plan import SweepCell, plan_sweep
from boe_eval.harness.sweep.solver import budget_check

if TYPE_CHECKING:
    from boe_eval.harness.schema import JobSpec


def _check_store(results_dir: Path, cells: list[SweepCell]) -> None:
    """A sweep into a folder holding cells of another experiment (other limit, model directory,
    dtype or code at the same operating points) stops here with one line, before any model loads."""
    from boe_eval.analysis.load import PoolingError, check_store_accepts, planned_summary
    from boe_eval.store import cell_id

    planned = []
    for cell in cells:
        knob = cell.spec.sampler_params.get(cell.rule.adaptive) if cell.rule.adaptive else cell.spec.steps
        planned.append(planned_summary(cell.spec.planned_columns(), cell_id(cell.spec.identity()), knob_value=knob))
    try:
        check_store_accepts(results_dir, planned)
    except PoolingError as err:
        raise ConfigError(f"output_dir={str(results_dir)!r} cannot take this sweep: {err}") from None


def run_sweep(job: JobSpec | DictConfig) -> Path:
    """Evaluate every cell not yet complete (model loaded once), then write the report. Under
    `accelerate launch` every rank decodes its share of each cell and rank 0 alone writes rows.

    Cells are claimed one at a time (`results.claim_cell`: a per-cell lock), so several sweeps into
    one folder share the work: a cell another process is computing is deferred to the end of the
    queue, then waited for, and never computed twice. A cell whose file does not verify is recomputed."""
    import torch

    from boe_eval.harness.distributed import data_parallel
    from boe_eval.harness.evaluate import evaluate_cell
    from boe_eval.store import cell_id, check_output_dir, claim_cell, ensure_results_dir, write_cell
    from boe_eval.harness.inputs import check_device_available
    from boe_eval.harness.specs import as_job
    from boe_eval.models.loading import load_denoiser

    job = as_job(job)
    if job.threads:
        torch.set_num_threads(job.threads)
    results_dir = check_output_dir(job.output_dir)
    dp = data_parallel()
    if dp.is_main:
        ensure_results_dir(results_dir)  # a read-only folder or a file in the way: one line, no model load
    sweep = read_sweep(job)
    denoiser = None

    def load():
        nonlocal denoiser
        if denoiser is None:
            denoiser = load_denoiser(job.model.path, dtype=job.model.dtype, device=dp.place(job.model.device))
        return denoiser

    seconds_per_forward = None
    if sweep.budget_axis == "wall_time":
        check_device_available(job.model.device)  # (calibration loads the model)
        plan_sweep(job, seconds_per_forward=1.0, sweep=sweep)  # bad input fails before the model is loaded
        seconds_per_forward = dp.broadcast_object(load_or_calibrate(results_dir, job, load) if dp.is_main else None)
    cells = plan_sweep(job, seconds_per_forward, sweep=sweep)
    check_device_available(job.model.device)  # cuda without a GPU: one line, no fallback
    if dp.is_main:
        print(f"[boe-eval sweep] output_dir: {results_dir}")
        _check_store(results_dir, cells)
    progress = job.progress and dp.is_main
    queue = [(n, cell, False) for n, cell in enumerate(cells, 1)]
    while queue:
        n, cell, waited = queue.pop(0)
        cid = cell_id(cell.spec.identity())
        what = f"{cell.entry.label} budget={cell.budget if cell.budget is not None else '-'} " \
               f"steps={cell.spec.steps} seed={cell.spec.seed}"
        state, lock = claim_cell(results_dir, cid, blocking=waited) if dp.is_main else (None, None)
        state = dp.broadcast_object(state)
        if state == "complete":
            if dp.is_main:
                suffix = " (by another process)" if waited else ""
                print(f"[boe-eval sweep] {n}/{len(cells)} {what}: complete{suffix}, skipped")
            continue
        if state == "busy":  # another sweep is computing it: do the others first, then wait for it
            if dp.is_main:
                print(f"[boe-eval sweep] {n}/{len(cells)} {what}: being computed by another process, deferred")
            queue.append((n, cell, True))
            continue
        try:
            rows = evaluate_cell(cell.spec, load(), cell.sampler, progress=progress)
            if not dp.is_main:
                continue
            summary = next(r for r in rows if r["row_type"] == "summary")
            extra = {"sweep": sweep.name, "sweep.order": cell.order, "cell_id": cid, **budget_check(cell, summary)}
            if seconds_per_forward is not None:
                extra["sweep.seconds_per_forward"] = seconds_per_forward
            for row in rows:
                row.update(extra)
            write_cell(results_dir, cid, rows, identity=cell.spec.identity())
        finally:
            if lock is not None:
                lock.release()
        flag = "" if extra["sweep.within_one_step"] in (True, None) else "  (measured compute is off budget!)"
        print(f"[boe-eval sweep] {n}/{len(cells)} {what}: score={summary['score']:.3f} "
              f"nfe={summary['nfe']:.1f}{flag}")
    if dp.is_main and job.report:
        from boe_eval.analysis.report import write_report

        written = write_report(results_dir, plot=job.plot)
        for path in written:
            print(f"[boe-eval sweep] wrote {path}")
        table = results_dir / "accuracy_by_budget.md"
        if table.exists():
            print()
            print(table.read_text().rstrip())
        plots = [p for p in written if p.suffix == ".png"]
        if plots:
            print(f"[boe-eval sweep] Pareto plot: {plots[0]}")
    return results_dir


