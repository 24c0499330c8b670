"""Plots of results (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_score_vs_compute(summaries: Sequence[dict], path: str | Path, compute: str = "nfe") -> Path:
    """Score (%) with its 95% interval against mean compute per sequence, one point per sampler."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for row in summaries:
        x, y = row.get(compute), 100 * row["score"]
        lo, hi = row.get("score_ci_low"), row.get("score_ci_high")
        yerr = None
        if lo is not None and hi is not None:
            yerr = [[y - 100 * lo], [100 * hi - y]]
        ax.errorbar([x], [y], yerr=yerr, fmt="o", capsize=3, label=row["sampler"])
        ax.annotate(row["sampler"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    first = summaries[0]
    label = {"nfe": "NFE per sequence (denoiser calls)", "forward_equivalents": "forward-equivalents per sequence",
             "wall_time_s": "wall time (s)"}.get(compute, compute)
    ax.set_xlabel(label)
    ax.set_ylabel(f"{first.get('primary_metric', 'score')} (%)")
    ax.set_title(f"{first.get('task')} - {first.get('model')}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
