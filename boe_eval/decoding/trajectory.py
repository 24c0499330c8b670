"""Per-step trajectory of a decode, on request: NFE, the masked entropy H_t (paper eq. 8) and the
slots committed at each step."""

from __future__ import annotations

from boe_eval.decoding.meter import Meter
from boe_eval.decoding.state import StepContext, StepDecision


class TrajectoryRecorder:
    def __init__(self, batch: int, enabled: bool) -> None:
        self.enabled = enabled
        self.steps: list[list[dict]] = [[] for _ in range(batch)]

    def record(self, ctx: StepContext, decision: StepDecision, meter: Meter) -> None:
        if not self.enabled:
            return
        masked_entropy = (ctx.entropy * ctx.masked).sum(1)
        for j, row in enumerate(ctx.rows.tolist()):
            start = int(ctx.gen_start[j])
            self.steps[row].append(
                {
                    "step": ctx.step,
                    "nfe": int(meter.nfe[row]),
                    "masked_entropy": float(masked_entropy[j]),
                    "committed": (decision.commit[j].nonzero().squeeze(1) - start).tolist(),
                }
            )

    def row(self, i: int) -> list[dict] | None:
        return self.steps[i] if self.enabled else None


__all__ = ["TrajectoryRecorder"]
