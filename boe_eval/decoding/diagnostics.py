"""Decision diagnostics (issue 14): did a sampler's choices actually differ from confidence's?

At every step the loop also computes what `confidence` would commit from the *same* logits and budget (top-b_t
of p(x0) among the eligible slots, `top_k_mask`), and counts per sequence:

- `decision_steps`: steps where a choice existed, i.e. not both commit sets equal to every eligible slot
  (a step that writes the whole block is forced for every sampler and is left out);
- `decisions_differ`: of those, steps whose commit set differs from confidence's;
- `degenerate_steps`: of those, steps where a known cause makes the sampler's choice *equal by construction* to
  confidence's (`degeneracy`): BoE with b_t >= |C_t| = ceil(rho |M_t|) commits all of C_t, which is confidence's
  top-|C_t|, plus confidence's next slots; LookUM with b_t >= |P| draws every candidate set from a pool of exactly
  b_t slots, confidence's top-b_t;
- `remasked`: written tokens turned back into masks (ReMDM-style remasking), the writes undone.

Agreement with confidence = 1 - decisions_differ / decision_steps. The diagnostics only observe: they read the
step's logits and the decision after the sampler made it and change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from boe_eval.decoding.ranking import top_k_mask
from boe_eval.decoding.state import StepContext, StepDecision

#: a non-confidence sampler agreeing on at least this fraction of its decision steps gets a warning
AGREEMENT_WARNING = 0.99
COUNTERS = ("decision_steps", "decisions_differ", "degenerate_steps", "remasked")


def degeneracy(sampler, ctx: StepContext) -> tuple[Tensor, str] | None:
    """Rows [b] bool whose decision this step equals confidence's by construction, and why: the policy's own
    `degeneracy(ctx)` (`boe_eval.samplers.base.Sampler`); None when it declares no known cause."""
    declared = getattr(sampler, "degeneracy", None)
    return declared(ctx) if callable(declared) else None


class DecisionDiagnostics:
    """Per-sequence counters of one `generate` call (see the module docstring)."""

    def __init__(self, batch: int) -> None:
        self.counts = {name: torch.zeros(batch, dtype=torch.long) for name in COUNTERS}
        self.cause: str | None = None

    @torch.no_grad()
    def observe(self, sampler, ctx: StepContext, decision: StepDecision) -> None:
        confidence = top_k_mask(ctx.confidence, ctx)
        everything = ctx.eligible
        forced = (confidence == everything).all(1) & (decision.commit == everything).all(1)
        choice = ~forced
        differ = (decision.commit != confidence).any(1) & choice
        rows = ctx.rows.cpu()
        self.counts["decision_steps"][rows] += choice.cpu().long()
        self.counts["decisions_differ"][rows] += differ.cpu().long()
        known = degeneracy(sampler, ctx)
        if known is not None:
            degenerate, self.cause = known
            self.counts["degenerate_steps"][rows] += (degenerate & choice).cpu().long()
        if decision.remask is not None:
            undone = decision.remask & (ctx.committed | decision.commit)
            self.counts["remasked"][rows] += undone.sum(1).cpu().long()

    def row(self, i: int) -> dict:
        out = {name: int(values[i]) for name, values in self.counts.items()}
        out["degeneracy_cause"] = self.cause
        return out


def decision_summary(rows: Sequence[dict]) -> dict:
    """Run-level figures from example rows: pooled agreement with confidence over all decision steps, the mean of
    the per-sequence agreements, the fraction of decision steps with a known degeneracy, writes undone."""
    totals = {name: sum(int(r.get(name) or 0) for r in rows) for name in COUNTERS}
    per_sequence = [1 - r["decisions_differ"] / r["decision_steps"] for r in rows if r.get("decision_steps")]
    steps = totals["decision_steps"]
    causes = sorted({r["degeneracy_cause"] for r in rows if r.get("degeneracy_cause")})
    return {
        "decision_steps": steps,
        "decisions_differ": totals["decisions_differ"],
        "agreement_with_confidence": 1 - totals["decisions_differ"] / steps if steps else None,
        "agreement_per_sequence": sum(per_sequence) / len(per_sequence) if per_sequence else None,
        "degenerate_fraction": totals["degenerate_steps"] / steps if steps else None,
        "degeneracy_cause": causes[0] if causes else None,
        "remasked": totals["remasked"],
    }


def agreement_warning(summary: dict) -> str | None:
    """One line when a sampler other than confidence agrees with confidence on ~every decision step (>= 99%),
    naming the cause when it is known to hold on those steps."""
    agreement = summary.get("agreement_with_confidence")
    sampler = summary.get("sampler")
    if sampler == "confidence" or agreement is None or (isinstance(agreement, float) and math.isnan(agreement)):
        return None
    if agreement < AGREEMENT_WARNING:
        return None
    label = summary.get("variant") or sampler
    text = (f"warning: {label} made the same commits as confidence on {100 * agreement:.1f}% of "
            f"{summary.get('decision_steps')} decision steps, so its comparison with confidence is void")
    fraction = summary.get("degenerate_fraction")
    if summary.get("degeneracy_cause") and fraction:
        text += f"; on {100 * fraction:.1f}% of them {summary['degeneracy_cause']}"
    return text


__all__ = ["AGREEMENT_WARNING", "COUNTERS", "DecisionDiagnostics", "agreement_warning", "decision_summary", "degeneracy"]
