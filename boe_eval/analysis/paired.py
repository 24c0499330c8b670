"""Paired comparisons of two samplers on the same items (issue 14): a paired test, not overlapping intervals.

- binary scores (solved / valid): exact McNemar test, i.e. a two-sided binomial test of the discordant pairs
  (items only one of the two gets right) against p = 1/2 (`scipy.stats.binomtest`);
- other scores (log-probabilities...): Wilcoxon signed-rank test of the per-item differences
  (`scipy.stats.wilcoxon`, zero differences dropped, two-sided).
"""

from __future__ import annotations

from collections.abc import Mapping

import math


def paired_test(first: Mapping, second: Mapping) -> dict:
    """Compare per-item scores {item: score} of `first` (the sampler) against `second` (the baseline) on the items
    both scored (None / NaN scores left out). Returns n, both means, the mean difference, wins/losses and p."""
    from scipy import stats

    items = sorted(k for k in first if k in second and _ok(first[k]) and _ok(second[k]))
    a = [float(first[k]) for k in items]
    b = [float(second[k]) for k in items]
    out = {"n": len(items), "mean": _mean(a), "baseline_mean": _mean(b), "difference": _mean(a) - _mean(b)
           if items else float("nan"), "wins": sum(x > y for x, y in zip(a, b)),
           "losses": sum(x < y for x, y in zip(a, b)), "test": None, "p_value": float("nan")}
    if not items:
        return out
    binary = all(v in (0.0, 1.0) for v in a + b)
    if binary:
        out["test"] = "McNemar exact"
        discordant = out["wins"] + out["losses"]
        out["p_value"] = 1.0 if discordant == 0 else float(stats.binomtest(out["wins"], discordant, 0.5).pvalue)
    else:
        out["test"] = "Wilcoxon signed-rank"
        diffs = [x - y for x, y in zip(a, b)]
        out["p_value"] = 1.0 if not any(diffs) else float(stats.wilcoxon(diffs, zero_method="wilcox").pvalue)
    return out


def _ok(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


__all__ = ["paired_test"]
