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
#: measured compute columns a table or plot can place results on (`boe-report --x`): besides the budget axes'
#: columns, the tokens the model processed and the analytic FLOPs (boe_eval.models.flops), the axes on which a
#: cheaper call (the step window, a KV cache) shows its savings where NFE does not
X_AXES: dict[str, str] = {
    "nfe": "NFE per sequence (denoiser calls, paper App. A.3.4; full max_gen_len)",
    "nfe_to_stop": "NFE per sequence to the stop condition (EB-Sampler generate-until)",
    "forward_equivalents": "forward-equivalents per sequence (1 backward = 2 forwards)",
    "seconds_per_sequence": "decoding wall time per sequence (s, measured)",
    "steps": "denoising steps",
    "tokens_processed": "tokens processed per sequence (positions fed to the model, all calls)",
    "flops": "FLOPs per sequence (analytic: forwards + 2 x differentiated forwards)",
    "forward_flops": "forward FLOPs per sequence (analytic)",
}


__all__ = ["BUDGET_AXES", "MEASURED_COLUMN", "X_AXES"]
