"""Masked-entropy trajectories H_t (TABES eq. 8) per decoding step, and the BoE-vs-confidence plot (paper
Figure 2: BoE should lower the total masked entropy faster).

The decoding loop records, when `DecodeConfig(record_trajectory=True)`, one entry per step and sequence:
the step, the NFE spent through it, H_t = sum over still-masked slots of the current prediction's entropy, and
the slots committed. These helpers turn that into a tidy frame and a line plot with a 95% band.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from boe_eval.decoding.loop import SequenceResult


def trajectory_frame(results: Mapping[str, Sequence[SequenceResult]]) -> pd.DataFrame:
    """One row per (sampler, sequence, step): columns sampler, sequence, step, nfe, masked_entropy, committed."""
    rows = []
    for sampler, sequences in results.items():
        for index, result in enumerate(sequences):
            if result.trajectory is None:
                raise ValueError(f"sampler {sampler!r}: decode with DecodeConfig(record_trajectory=True) to get H_t")
            for entry in result.trajectory:
                rows.append({"sampler": sampler, "sequence": index, **entry, "committed": len(entry["committed"])})
    return pd.DataFrame(rows, columns=["sampler", "sequence", "step", "nfe", "masked_entropy", "committed"])


def mean_trajectory(frame: pd.DataFrame, by: str = "step") -> pd.DataFrame:
    """Mean H_t per sampler and `by` ("step" or "nfe") with its standard error and a normal 95% interval."""
    grouped = frame.groupby(["sampler", by])["masked_entropy"]
    summary = grouped.agg(["mean", "sem", "count"]).reset_index()
    summary["sem"] = summary["sem"].fillna(0.0)
    summary["low"] = summary["mean"] - 1.96 * summary["sem"]
    summary["high"] = summary["mean"] + 1.96 * summary["sem"]
    return summary


def plot_entropy_trajectory(frame: pd.DataFrame, path: str | Path, by: str = "step", title: str = "") -> Path:
    """Line plot of the mean masked entropy H_t against `by`, one line (with 95% band) per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = mean_trajectory(frame, by)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for sampler, part in summary.groupby("sampler", sort=False):
        ax.plot(part[by], part["mean"], marker="o", markersize=3, label=sampler)
        ax.fill_between(part[by], part["low"], part["high"], alpha=0.2)
    ax.set_xlabel("decoding step t" if by == "step" else "NFE")
    ax.set_ylabel(r"masked entropy $\mathcal{H}_t$ (nats)")
    ax.set_title(title or "Masked entropy per step (TABES Fig. 2)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


__all__ = ["mean_trajectory", "plot_entropy_trajectory", "trajectory_frame"]
