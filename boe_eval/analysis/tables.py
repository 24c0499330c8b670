"""Result tables from summary rows (pandas)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def summary_frame(summaries: Sequence[dict]) -> pd.DataFrame:
    """One line per run: sampler, score with its 95% interval, compute."""
    df = pd.DataFrame(list(summaries))
    if df.empty:
        return df
    for col in ("score_ci_low", "score_ci_high", "nfe_to_stop", "backwards", "forward_equivalents"):
        if col not in df:
            df[col] = float("nan")
    return df


def format_summary_table(summaries: Sequence[dict]) -> str:
    """Markdown table: score (%) [95% CI], NFE, forwards, backwards, forward-equivalents, wall time."""
    df = summary_frame(summaries)
    if df.empty:
        return "(no results)"

    def pct(x: float) -> str:
        return "n/a" if pd.isna(x) else f"{100 * x:.1f}"

    table = pd.DataFrame(
        {
            "sampler": df["sampler"],
            "n": df["n_examples"].astype(int),
            "score %": df["score"].map(pct),
            "95% CI": [
                "n/a" if pd.isna(lo) else f"[{pct(lo)}, {pct(hi)}]" for lo, hi in zip(df["score_ci_low"], df["score_ci_high"])
            ],
            "NFE": df["nfe"].map(lambda v: f"{v:.1f}"),
            "forwards": df["forwards"].map(lambda v: f"{v:.1f}"),
            "backwards": df["backwards"].map(lambda v: f"{v:.1f}"),
            "fwd-equiv": df["forward_equivalents"].map(lambda v: f"{v:.1f}"),
            "wall s": df["wall_time_s"].map(lambda v: f"{v:.1f}"),
        }
    )
    return table.to_markdown(index=False)
