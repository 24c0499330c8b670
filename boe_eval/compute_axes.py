"""The compute axes a comparison can be placed on (docs/references.md §10): a sweep's budget axis
and the summary-row column that holds each axis' measured compute per sequence."""

from __future__ import annotations

BUDGET_AXES: dict[str, str] = {
    "steps": "denoising steps (fixed horizon, not compute-matched)",
    "nfe": "NFE per sequence (denoiser calls, paper App. A.3.4)",
    "forward_equivalents": "forward-equivalents per sequence (backward = 2 forwards)",
    "wall_time": "wall time per sequence (s)",
}
#: the summary-row column holding each axis' measured compute per sequence
MEASURED_COLUMN = {"steps": "nfe", "nfe": "nfe", "forward_equivalents": "forward_equivalents",
                   "wall_time": "seconds_per_sequence"}


__all__ = ["BUDGET_AXES", "MEASURED_COLUMN"]
