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

The package, a module per concept: `config` (the `sweep:` block), `solver` (each sampler's knob for a
budget and the honesty check of the compute it spent), `plan` (the cells of a sweep, each a
`CellSpec` derived from the job's spec), `calibration` (the wall-time axis' seconds per forward) and
`runner` (evaluating the cells into the result store).
"""

from __future__ import annotations

from boe_eval.compute_axes import BUDGET_AXES, MEASURED_COLUMN
from boe_eval.harness.sweep.calibration import CALIBRATION_FILE, calibrate_seconds_per_forward, load_or_calibrate
from boe_eval.harness.sweep.config import SweepConfig, SweepEntry, read_sweep
from boe_eval.harness.sweep.plan import SweepCell, plan_sweep
from boe_eval.harness.sweep.runner import run_sweep
from boe_eval.harness.sweep.solver import Assignment, budget_check, derive_steps, knob_rule, measured_cost
from boe_eval.samplers.cost import KnobRule, StepCost, VaryingStepCost

__all__ = [
    "Assignment", "BUDGET_AXES", "CALIBRATION_FILE", "KnobRule", "MEASURED_COLUMN", "StepCost", "SweepCell",
    "SweepConfig", "SweepEntry", "VaryingStepCost", "budget_check", "calibrate_seconds_per_forward", "derive_steps",
    "knob_rule", "load_or_calibrate", "measured_cost", "plan_sweep", "read_sweep", "run_sweep",
]
