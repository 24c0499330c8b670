"""Compute-matched sweeps (issue 7; paper Figure 4 and Tables 2, 3, 5).

A sweep (`configs/sweep/<name>.yaml`, under the `sweep:` key) names samplers and compute budgets on
one budget axis; the model and task come from the composed config. Every (model, sampler, budget,
task, seed) is one cell of the results store (`boe_eval.store`): written atomically with a
completion record, skipped on rerun only if its file verifies (a damaged one is recomputed) and
claimed under a per-cell lock, so a sweep killed at any point and restarted ends with the same rows
and two sweeps into one folder never compute a cell twice.

Each sampler's own knob follows from the budget through its `KnobRule` (the compute of one decoding
step): steps = budget for greedy samplers and PC-Sampler, budget / 2 for BoE and ReMDM-LLaDA under
paper accounting (App. A.3.4: every denoiser call is one NFE), budget / (1 + k) for LookUM. Adaptive
samplers (EB-Sampler) sweep their own parameter (gamma) and are placed at their measured compute.

Budget axes: `steps` (fixed horizon, every sampler gets `steps = budget`: the paper's d1 protocol,
not compute-matched), `nfe` (paper accounting), `forward_equivalents` (a backward counted as
`backward_cost` forwards), `wall_time` (seconds per sequence, converted with a measured seconds per
forward-equivalent persisted in `calibration.json`; runs are placed at their measured wall time).
Budgets are absolute (`budgets: [48, 96]`) or fractions of the generation length
(`budget_fractions: [0.5]`: T = L/2, so one sweep serves L = 128 and 256).

    boe-eval sweep=<name>                   # every cell in one process, the model loaded once
    boe-eval -m sweep=<name>                # Hydra multirun: one job per sampler (hydra.sweeper.params)
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from boe_eval.compute_axes import BUDGET_AXES, MEASURED_COLUMN
from boe_eval.errors import ConfigError
from boe_eval.samplers.cost import KnobRule, StepCost, VaryingStepCost  # noqa: F401  (re-exported)

CALIBRATION_FILE = "calibration.json"


def knob_rule(sampler: str) -> KnobRule:
    """The cost and knob a registered sampler declares (`Sampler.knob`, boe_eval/samplers/README.md)."""
    import boe_eval.samplers  # noqa: F401  (registers every sampler module)
    from boe_eval.samplers.base import SAMPLERS

    rule = SAMPLERS[sampler][0].knob if sampler in SAMPLERS else None
    if rule is None:
        with_rules = sorted(name for name, (cls, _) in SAMPLERS.items() if cls.knob is not None)
        raise ConfigError(
            f"sampler {sampler!r} has no compute-matching rule: samplers with one are {', '.join(with_rules)}"
        )
    return rule


@dataclass(frozen=True)
class Assignment:
    """A sampler's knob for one budget and the compute it plans to spend."""

    steps: int
    step_cost: float  #: cost of one step on the budget axis (wall time: forward-equivalents)
    planned_cost: float  #: steps x step_cost (wall time: forward-equivalents)


def derive_steps(
    sampler: str,
    params: Mapping[str, Any],
    budget: float,
    axis: str,
    gen_length: int,
    block_length: int,
    backward_cost: float = 2.0,
    seconds_per_forward: float | None = None,
) -> Assignment:
    """Steps whose planned compute is nearest `budget` on `axis` (ties to fewer steps), among the step
    counts the layout allows (a multiple of the number of blocks, at most gen_length). Raises
    ConfigError when no step count lands within one step's cost of the budget."""
    if axis not in BUDGET_AXES:
        raise ConfigError(f"budget_axis={axis!r} is invalid: choose one of {', '.join(BUDGET_AXES)}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise ConfigError(f"budget={budget!r} is invalid: budgets must be positive numbers")
    rule = knob_rule(sampler)
    num_blocks = gen_length // block_length
    cost = rule.step_cost(params).on(axis, backward_cost)
    target = float(budget)
    if axis == "wall_time":
        if not seconds_per_forward:
            raise ConfigError("budget_axis=wall_time needs a measured seconds per forward-equivalent (calibration)")
        target = budget / seconds_per_forward
    choices = range(num_blocks, gen_length + 1, num_blocks)
    steps = min(choices, key=lambda s: (abs(s * cost - target), s))
    planned = steps * cost
    if axis != "wall_time" and abs(planned - target) > cost + 1e-9:
        near = sorted({s * cost for s in choices}, key=lambda c: abs(c - target))[:2]
        raise ConfigError(
            f"budget={budget:g} ({axis}) cannot be met by {sampler} within one step's cost ({cost:g}): its steps must "
            f"be a multiple of {num_blocks} (gen_length {gen_length} / block_length {block_length}) and at most "
            f"{gen_length}; the nearest budgets it can meet are {', '.join(f'{c:g}' for c in sorted(near))}"
        )
    return Assignment(steps=steps, step_cost=cost, planned_cost=planned)


# --------------------------------------------------------------------------------------------- config
@dataclass
class SweepEntry:
    """One sampler of a sweep: its name, fixed parameters, a display label (the variant) and, for an
    adaptive sampler, the values of its swept parameter."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    grid: list[Any] | None = None

    def __post_init__(self) -> None:
        self.label = self.label or self.name


@dataclass
class SweepConfig:
    name: str
    budget_axis: str
    budgets: list[float]
    samplers: list[SweepEntry]
    seeds: list[int]
    only_sampler: str | None = None
    only_budget: float | None = None


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def read_sweep(cfg: DictConfig) -> SweepConfig:
    """Validate the `sweep:` block (one-line ConfigError naming the bad field)."""
    raw = _plain(cfg.sweep)
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep={raw!r} is invalid: it must be a mapping (configs/sweep/<name>.yaml)")
    name = raw.get("name")
    if not name or not isinstance(name, str):
        raise ConfigError(f"sweep.name={name!r} is invalid: give the sweep a name (it names the results folder)")
    axis = raw.get("budget_axis", "nfe")
    if axis not in BUDGET_AXES:
        raise ConfigError(f"sweep.budget_axis={axis!r} is invalid: choose one of {', '.join(BUDGET_AXES)}")
    budgets, fractions = raw.get("budgets"), raw.get("budget_fractions")
    if budgets is not None and fractions is not None:
        raise ConfigError("sweep.budgets and sweep.budget_fractions are both set: give one of them")
    key = "budget_fractions" if fractions is not None else "budgets"
    values = fractions if fractions is not None else budgets
    if not isinstance(values, list) or not values:
        raise ConfigError(f"sweep.{key}={values!r} is invalid: give a non-empty list of positive numbers")
    for b in values:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
            raise ConfigError(f"sweep.{key} contains {b!r}: budgets must be positive numbers")
    if fractions is not None:  # budget = fraction x gen_length (e.g. 0.5: the d1 protocol's T = L/2)
        gen_length = cfg.get("gen_length")
        if not isinstance(gen_length, int) or gen_length <= 0:
            raise ConfigError(f"gen_length={gen_length!r} is invalid: it must be a positive integer")
        budgets = [f * gen_length for f in fractions]
        budgets = [int(b) if float(b).is_integer() else b for b in budgets]
    entries = []
    for item in raw.get("samplers") or []:
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"sweep.samplers entry {item!r} is invalid: use a name or {{name, params, label, grid}}")
        unknown = sorted(set(item) - {"name", "params", "label", "grid"})
        if unknown:
            raise ConfigError(f"sweep.samplers entry {item['name']!r} has unknown key {unknown[0]!r}: "
                              "allowed are name, params, label, grid")
        rule = knob_rule(str(item["name"]))
        grid = item.get("grid")
        if rule.adaptive and not grid:
            raise ConfigError(f"sweep.samplers entry {item['name']!r} is adaptive: give grid: [values of "
                              f"{rule.adaptive}] (each run is placed at its measured compute)")
        if grid and not rule.adaptive:
            raise ConfigError(f"sweep.samplers entry {item['name']!r} takes no grid: its steps follow from the budgets")
        entries.append(SweepEntry(str(item["name"]), dict(item.get("params") or {}), str(item.get("label") or ""),
                                  list(grid) if grid else None))
    if not entries:
        raise ConfigError("sweep.samplers is empty: list the samplers to compare")
    labels = [e.label for e in entries]
    duplicate = next((lab for lab in labels if labels.count(lab) > 1), None)
    if duplicate:
        raise ConfigError(f"sweep.samplers has two entries labelled {duplicate!r}: give each variant its own label")
    seeds = raw.get("seeds")
    seeds = [int(cfg.seed)] if seeds is None else seeds
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"sweep.seeds={seeds!r} is invalid: give a list of integers (or null for the seed key)")
    only = raw.get("only") or {}
    only_sampler = only.get("sampler")
    if only_sampler is not None and str(only_sampler) not in labels + [e.name for e in entries]:
        raise ConfigError(f"sweep.only.sampler={only_sampler!r} is not in this sweep: its samplers are {', '.join(labels)}")
    only_budget = only.get("budget")
    if only_budget is not None and only_budget not in budgets:
        raise ConfigError(f"sweep.only.budget={only_budget!r} is not in this sweep: its budgets are {budgets}")
    return SweepConfig(str(name), axis, list(budgets), entries, list(seeds),
                       None if only_sampler is None else str(only_sampler), only_budget)


# --------------------------------------------------------------------------------------------- cells
@dataclass
class SweepCell:
    spec: Any  #: CellSpec
    sampler: Any  #: Sampler
    entry: SweepEntry
    budget: float | None  #: None for an adaptive sampler's grid point
    assignment: Assignment | None
    rule: KnobRule
    order: int  #: position of the sampler entry in the sweep (tables list samplers in this order)


def _layout(cfg: DictConfig) -> tuple[int, int]:
    gen_length = cfg.gen_length
    block_length = cfg.block_length if cfg.block_length is not None else gen_length
    if not isinstance(gen_length, int) or gen_length <= 0:
        raise ConfigError(f"gen_length={gen_length!r} is invalid: it must be a positive integer")
    if not isinstance(block_length, int) or block_length <= 0 or gen_length % block_length:
        raise ConfigError(f"block_length={block_length!r} is invalid: it must be a positive divisor of gen_length={gen_length}")
    return gen_length, block_length


def _cell_config(cfg: DictConfig, entry: SweepEntry, params: dict, steps: int, seed: int) -> DictConfig:
    cell = copy.deepcopy(cfg)
    with open_dict(cell):
        cell.sampler = {"name": entry.name, "params": params}
        cell.steps = steps
        cell.seed = seed
    return cell


def plan_sweep(cfg: DictConfig, seconds_per_forward: float | None = None) -> list[SweepCell]:
    """Every cell of the sweep (after `sweep.only` selection), validated, without loading a model."""
    from boe_eval.harness.specs import build_specs
    from boe_eval.samplers.base import build_sampler

    sweep = read_sweep(cfg)
    gen_length, block_length = _layout(cfg)
    backward_cost = 2.0
    cells: list[SweepCell] = []
    for seed in sweep.seeds:
        for order, entry in enumerate(sweep.samplers):
            if sweep.only_sampler is not None and sweep.only_sampler not in (entry.label, entry.name):
                continue
            rule = knob_rule(entry.name)
            if rule.adaptive:
                if sweep.only_budget is not None:
                    continue
                # an adaptive sampler sets its own pace; steps = gen_length only bounds the schedule
                points = [({**entry.params, rule.adaptive: value}, None, None) for value in entry.grid or []]
            else:
                points = []
                resolved = build_sampler(entry.name, **entry.params).params()  # defaults filled in (e.g. k)
                for budget in sweep.budgets:
                    if sweep.only_budget is not None and budget != sweep.only_budget:
                        continue
                    a = derive_steps(entry.name, resolved, budget, sweep.budget_axis, gen_length, block_length,
                                     backward_cost, seconds_per_forward)
                    points.append((dict(entry.params), budget, a))
            for params, budget, assignment in points:
                steps = assignment.steps if assignment else gen_length
                [(spec, sampler)] = build_specs(_cell_config(cfg, entry, params, steps, seed))
                spec.extra = {"budget_axis": sweep.budget_axis, "budget": budget, "variant": entry.label}
                cells.append(SweepCell(spec, sampler, entry, budget, assignment, rule, order))
    if not cells:
        raise ConfigError(f"sweep {sweep.name!r} selects no cell (sweep.only={sweep.only_sampler!r}, {sweep.only_budget!r})")
    return cells


def measured_cost(summary: Mapping[str, Any], axis: str) -> float | None:
    """Mean compute per sequence of a run on a budget axis (wall time: decoding seconds per sequence,
    the meter's per-sequence share of each model call)."""
    if axis == "wall_time":
        n = summary.get("n_examples") or 0
        seconds = summary.get("decode_time_s")
        return seconds / n if n and seconds is not None else None
    return summary.get(MEASURED_COLUMN[axis])


def budget_check(cell: SweepCell, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Fields added to every row of a cell: the derived knob, the planned compute and whether the
    measured compute is honest (within one step's cost of the budget; <= budget + one step for
    samplers that may finish early; adaptive samplers are placed at their measured compute; a `steps`
    axis is a fixed horizon, not a compute budget, so it is not checked)."""
    axis = cell.spec.extra["budget_axis"]
    measured = measured_cost(summary, axis)
    out: dict[str, Any] = {
        "sweep.knob": cell.rule.adaptive or "steps",
        "sweep.knob_value": cell.spec.sampler_params.get(cell.rule.adaptive) if cell.rule.adaptive else cell.spec.steps,
        "sweep.measured_cost": measured,
        "sweep.placement": "measured" if (cell.rule.adaptive or cell.rule.early_exit or axis == "wall_time")
        else "budget",
    }
    if cell.assignment is None or measured is None or axis in ("wall_time", "steps"):
        out.update({"sweep.planned_cost": cell.assignment.planned_cost if cell.assignment else None,
                    "sweep.step_cost": cell.assignment.step_cost if cell.assignment else None,
                    "sweep.budget_gap": None, "sweep.within_one_step": None})
        return out
    gap = measured - cell.budget
    tolerance = cell.assignment.step_cost + 1e-9
    honest = gap <= tolerance if cell.rule.early_exit else abs(gap) <= tolerance
    out.update({"sweep.planned_cost": cell.assignment.planned_cost, "sweep.step_cost": cell.assignment.step_cost,
                "sweep.budget_gap": gap, "sweep.within_one_step": bool(honest)})
    return out


# --------------------------------------------------------------------------------------------- wall time
def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Calibration file, written atomically (temporary file removed on every error path)."""
    from boe_eval.store import write_text_atomic

    write_text_atomic(path, json.dumps(payload, indent=2))


def calibrate_seconds_per_forward(denoiser: Any, batch_size: int, width: int, repeats: int = 5) -> float:
    """Median seconds of one denoiser forward per sequence on a [batch_size, width] canvas (after one
    warm-up call), the wall-time axis' conversion to forward-equivalents."""
    import statistics

    import torch

    ids = torch.full((batch_size, width), denoiser.mask_id, dtype=torch.long, device=denoiser.device)
    mask = torch.ones_like(ids)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            denoiser.logits(ids, attention_mask=mask)
            if i:
                times.append((time.perf_counter() - start) / batch_size)
    return statistics.median(times)


def load_or_calibrate(results_dir: Path, cfg: DictConfig, load: Callable[[], Any]) -> float:
    """Seconds per forward-equivalent, measured once per results folder and reused on every rerun (so
    a restarted wall-time sweep derives the same cells)."""
    path = results_dir / CALIBRATION_FILE
    model_path = str(cfg.model.path)
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("model_path") == model_path:
            return float(saved["seconds_per_forward"])
    gen_length, _ = _layout(cfg)
    width = gen_length + int(OmegaConf.select(cfg, "sweep.calibration_prompt_tokens", default=64) or 64)
    seconds = calibrate_seconds_per_forward(load(), int(cfg.batch_size), width)
    _write_json_atomic(path, {"model_path": model_path, "seconds_per_forward": seconds, "batch_size": int(cfg.batch_size),
                              "canvas_width": width, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return seconds


# --------------------------------------------------------------------------------------------- runner
def _check_store(results_dir: Path, cells: list[SweepCell]) -> None:
    """A sweep into a folder holding cells of another experiment (other limit, model directory,
    dtype or code at the same operating points) stops here with one line, before any model loads."""
    from boe_eval.analysis.load import PoolingError, check_store_accepts, planned_summary
    from boe_eval.store import cell_id

    planned = []
    for cell in cells:
        knob = cell.spec.sampler_params.get(cell.rule.adaptive) if cell.rule.adaptive else cell.spec.steps
        planned.append(planned_summary(cell.spec, cell_id(cell.spec.identity()), knob_value=knob))
    try:
        check_store_accepts(results_dir, planned)
    except PoolingError as err:
        raise ConfigError(f"output_dir={str(results_dir)!r} cannot take this sweep: {err}") from None


def run_sweep(cfg: DictConfig) -> Path:
    """Evaluate every cell not yet complete (model loaded once), then write the report. Under
    `accelerate launch` every rank decodes its share of each cell and rank 0 alone writes rows.

    Cells are claimed one at a time (`results.claim_cell`: a per-cell lock), so several sweeps into
    one folder share the work: a cell another process is computing is deferred to the end of the
    queue, then waited for, and never computed twice. A cell whose file does not verify is recomputed."""
    import torch

    from boe_eval.harness.distributed import data_parallel
    from boe_eval.harness.evaluate import evaluate_cell
    from boe_eval.store import cell_id, check_output_dir, claim_cell, ensure_results_dir, write_cell
    from boe_eval.harness.schema import check_device_available
    from boe_eval.models.loading import load_denoiser

    threads = cfg.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    results_dir = check_output_dir(cfg.output_dir)
    dp = data_parallel()
    if dp.is_main:
        ensure_results_dir(results_dir)  # a read-only folder or a file in the way: one line, no model load
    sweep = read_sweep(cfg)
    denoiser = None

    def load():
        nonlocal denoiser
        if denoiser is None:
            denoiser = load_denoiser(str(cfg.model.path), dtype=str(cfg.model.get("dtype", "float32")),
                                     device=dp.place(str(cfg.model.get("device", "cpu"))))
        return denoiser

    seconds_per_forward = None
    if sweep.budget_axis == "wall_time":
        check_device_available(str(cfg.model.get("device", "cpu")))  # (calibration loads the model)
        plan_sweep(cfg, seconds_per_forward=1.0)  # bad input fails before the model is loaded
        seconds_per_forward = dp.broadcast_object(load_or_calibrate(results_dir, cfg, load) if dp.is_main else None)
    cells = plan_sweep(cfg, seconds_per_forward)
    check_device_available(str(cfg.model.get("device", "cpu")))  # cuda without a GPU: one line, no fallback
    if dp.is_main:
        print(f"[boe-eval sweep] output_dir: {results_dir}")
        _check_store(results_dir, cells)
    progress = bool(cfg.get("progress", True)) and dp.is_main
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
    if dp.is_main and cfg.get("report", True):
        from boe_eval.analysis.report import write_report

        written = write_report(results_dir, plot=bool(cfg.get("plot", True)))
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


__all__ = [
    "Assignment", "BUDGET_AXES", "KnobRule", "MEASURED_COLUMN", "StepCost", "SweepCell", "SweepConfig",
    "SweepEntry", "budget_check", "derive_steps", "knob_rule", "plan_sweep", "read_sweep", "run_sweep",
    "VaryingStepCost",
]
