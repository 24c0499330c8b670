"""95% confidence intervals on accuracies (issue 7: small test sets make 1-2 point gaps noise).

Pass/fail scores get the Wilson score interval (scipy `binomtest(...).proportion_ci`); fractional
per-example scores (e.g. Sudoku cell accuracy) get a percentile bootstrap of the mean
(`scipy.stats.bootstrap`, fixed seed so a report is reproducible).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


def wilson_ci(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a proportion."""
    if n <= 0:
        return (float("nan"), float("nan"))
    from scipy import stats  # here, not at import: scipy.stats takes seconds and a job's pre-flight needs none of it

    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def bootstrap_ci(values: Sequence[float], confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    if np.all(data == data[0]):
        return (float(data[0]), float(data[0]))
    from scipy import stats

    res = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                          method="percentile", rng=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def accuracy_ci(scores: Sequence[float | None], confidence: float = CONFIDENCE) -> tuple[float, float, float, str]:
    """(mean, low, high, method) of per-example scores in [0, 1]; missing scores are dropped."""
    data = [float(s) for s in scores if s is not None and np.isfinite(s)]
    if not data:
        return (float("nan"), float("nan"), float("nan"), "none")
    mean = float(np.mean(data))
    if all(s in (0.0, 1.0) for s in data):
        low, high = wilson_ci(int(sum(data)), len(data), confidence)
        return (mean, low, high, "wilson")
    low, high = bootstrap_ci(data, confidence)
    return (mean, low, high, "bootstrap")


__all__ = ["accuracy_ci", "bootstrap_ci", "wilson_ci"]
