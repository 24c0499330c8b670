"""The TABES Table 4 layout of an unconditional-generation sweep (docs/protocols.md "Unconditional generation"):
one line per method and budget with MAUVE (higher is better), GenPPL under the AR scorer (lower), unigram entropy
(near the data's) and, where the corpus has an exact likelihood, the oracle GenPPL; the measured NFE beside."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from boe_eval.analysis.load import load_rows

#: summary column -> table header, in the paper's order
COLUMNS = {"metric.mauve": "MAUVE ↑", "metric.gen_ppl": "GenPPL ↓", "metric.oracle_gen_ppl": "oracle GenPPL ↓",
           "metric.entropy": "entropy"}


def uncond_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Summary rows of the cells, as (method, budget, NFE, metrics), in sweep order then budget."""
    summaries = rows[rows["row_type"] == "summary"].copy()
    summaries["method"] = summaries.get("variant", summaries["sampler"]).fillna(summaries["sampler"])
    order = {m: i for i, m in enumerate(dict.fromkeys(summaries["method"]))}
    if "sweep.order" in summaries and summaries["sweep.order"].notna().any():
        order = {m: float(o) for m, o in summaries.groupby("method")["sweep.order"].min().items()}
    summaries["_order"] = summaries["method"].map(order)
    budget = summaries["budget"] if "budget" in summaries else pd.Series([pd.NA] * len(summaries), index=summaries.index)
    summaries["budget"] = pd.to_numeric(budget, errors="coerce")
    summaries = summaries.sort_values(["_order", "budget", "nfe"], na_position="first")
    keep = ["method", "budget", "steps", "nfe", "n_examples", *[c for c in COLUMNS if c in summaries]]
    return summaries[keep].reset_index(drop=True)


def uncond_table(rows: pd.DataFrame) -> str:
    """Markdown: Method | budget | NFE | MAUVE | GenPPL | oracle GenPPL | entropy."""
    frame = uncond_frame(rows)
    table = pd.DataFrame({
        "Method": frame["method"],
        "budget (NFE)": frame["budget"].map(lambda b: "–" if pd.isna(b) else f"{b:g}"),
        "NFE": frame["nfe"].map(lambda v: f"{float(v):.1f}"),
        "samples": frame["n_examples"].astype(int),
    })
    for column, title in COLUMNS.items():
        if column in frame:
            digits = 3 if column == "metric.mauve" else 2
            table[title] = frame[column].map(lambda v, d=digits: "–" if pd.isna(v) else f"{float(v):.{d}f}")
    return table.to_markdown(index=False)


def write_uncond_table(results_dir: str | Path) -> Path:
    path = Path(results_dir) / "table4.md"
    path.write_text(uncond_table(load_rows(results_dir)) + "\n")
    return path


__all__ = ["COLUMNS", "uncond_frame", "uncond_table", "write_uncond_table"]
