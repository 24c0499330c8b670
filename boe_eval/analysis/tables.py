"""Result tables (pandas -> Markdown and LaTeX), in the paper's layouts:

- `paper_table`: Table 2 / 3 (samplers x tasks x lengths, best in bold, second underlined);
- `budget_table`: the compute-matched view behind Figure 4 (samplers x budgets, per task and length);
- `ablation_table`: Table 5 (variant, accuracy, runtime);
- `cells_table`: every operating point with all its compute counts and the budget check.

Every accuracy carries its 95% interval (Wilson or bootstrap, `boe_eval.analysis.intervals`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from boe_eval.decoding.diagnostics import agreement_warning
from boe_eval.compute_axes import BUDGET_AXES, MEASURED_COLUMN

AXIS_UNITS = {"steps": "steps", "nfe": "NFE", "forward_equivalents": "fwd-eq", "wall_time": "s"}


# --------------------------------------------------------------------------------------------- legacy
def summary_frame(summaries: Sequence[dict]) -> pd.DataFrame:
    """One line per run: sampler, score with its 95% interval, compute."""
    df = pd.DataFrame(list(summaries))
    if df.empty:
        return df
    for col in ("score_ci_low", "score_ci_high", "nfe_to_stop", "backwards", "forward_equivalents"):
        if col not in df:
            df[col] = float("nan")
    return df


#: corpus-level metrics of the unconditional-generation tasks, shown when a run reports them
CORPUS_COLUMNS = {"metric.mauve": "MAUVE", "metric.gen_ppl": "GenPPL", "metric.entropy": "entropy",
                  "metric.oracle_gen_ppl": "oracle GenPPL"}


def format_summary_table(summaries: Sequence[dict], files: Mapping[str, str] | None = None) -> str:
    """Markdown summary of one job: a heading line (model, task, n, decoding settings), one table row per
    sampler (primary score with its 95% Wilson interval, the task's other metrics, mean compute per
    sequence, wall time, the row file: its name in `files` (cell id -> file name), else `<cell id>.jsonl`) and a
    legend saying what each column is."""
    files = files or {}
    df = summary_frame(summaries)
    if df.empty:
        return "(no results)"
    first = df.iloc[0]
    metric = str(first.get("primary_metric") or "score")
    secondary = [c for c in df.columns if c.startswith("metric.") and c != f"metric.{metric}" and df[c].notna().any()]
    n_values = sorted({int(n) for n in df["n_examples"]})
    n_text = str(n_values[0]) if len(n_values) == 1 else f"{n_values[0]}-{n_values[-1]}"
    heading = (f"model={first.get('model')} task={first.get('task')} metric={metric} n={n_text} examples per sampler "
               f"gen_length={first.get('gen_length')} steps={first.get('steps')} block_length={first.get('block_length')}")
    table = pd.DataFrame(
        {
            "sampler": df["variant"].fillna(df["sampler"]) if "variant" in df else df["sampler"],
            "n": df["n_examples"].astype(int),
            f"{metric} %": df["score"].map(_pct),
            "95% CI": [_ci_text(lo, hi) for lo, hi in zip(df["score_ci_low"], df["score_ci_high"])],
            **{f"{c.removeprefix('metric.')} %" if _is_fraction(df[c]) else c.removeprefix("metric."):
               df[c].map(_pct if _is_fraction(df[c]) else _num) for c in secondary},
            "NFE": df["nfe"].map(_num),
            "forwards": df["forwards"].map(_num),
            "backwards": df["backwards"].map(_num),
            "fwd-equiv": df["forward_equivalents"].map(_num),
            "wall s": df["wall_time_s"].map(_num),
            "agree w/ conf %": (df["agreement_with_confidence"] if "agreement_with_confidence" in df
                                else pd.Series([None] * len(df))).map(_pct),
        }
    )
    for column, title in CORPUS_COLUMNS.items():  # unconditional generation (docs/protocols.md)
        if column in df and df[column].notna().any():
            table[title] = df[column].map(lambda v: _num(v, 3))
    if "remasked" in df and (df["remasked"].fillna(0) > 0).any():
        table["remasked"] = df["remasked"].map(lambda v: _num(v, 0))
    if "cell_id" in df:
        table["rows file"] = df["cell_id"].map(
            lambda c: f"rows/{files.get(c, f'{c}.jsonl')}" if isinstance(c, str) else MISSING)
    legend = ("n: examples scored per sampler. %: mean over the n examples, in percent; 95% CI: Wilson score "
              f"interval of {metric} (– when it is not a 0/1 score). NFE, forwards, backwards, fwd-equiv "
              "(forwards + 2 x backwards): means per sequence. wall s: seconds of the sampler's whole evaluation "
              "(lm-eval building the requests, decoding every sequence, scoring). agree w/ conf: share of decision "
              "steps on which the sampler chose the positions confidence would have chosen.")
    lines = [heading, "", markdown(table), "", legend]
    lines += [w for w in (agreement_warning(s) for s in summaries) if w]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- helpers
#: how every table shows a value it does not have
MISSING = "–"


def _is_fraction(values: pd.Series) -> bool:
    """Whether a metric column holds fractions in [0, 1] (then shown in percent)."""
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(numbers)) and bool(((numbers >= 0) & (numbers <= 1)).all())


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table of already formatted cells, shown as formatted: tabulate would re-parse number-like text
    ("85.0" -> "85", "6.0" -> "6"), so parsing is off; columns of numbers are right-aligned."""
    def numeric(column: pd.Series) -> bool:
        texts = [str(v) for v in column if str(v) != MISSING]
        return bool(texts) and all(pd.notna(pd.to_numeric(t, errors="coerce")) for t in texts)

    aligned = ["right" if numeric(frame[c]) else "left" for c in frame.columns]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=aligned)


def _pct(x) -> str:
    return MISSING if x is None or pd.isna(x) else f"{100 * float(x):.1f}"


def _num(x, digits: int = 1) -> str:
    return MISSING if x is None or pd.isna(x) else f"{float(x):.{digits}f}"


def _ci_text(lo, hi) -> str:
    return MISSING if lo is None or hi is None or pd.isna(lo) or pd.isna(hi) else f"[{_pct(lo)}, {_pct(hi)}]"


def _budget_text(b) -> str:
    return f"{float(b):g}"


def rank_marks(values: pd.Series) -> pd.Series:
    """'best' / 'second' for the highest and second-highest values at the displayed precision (ties
    share a mark); NaN gets no mark."""
    shown = {k: round(100 * float(v), 1) for k, v in values.items() if pd.notna(v)}
    distinct = sorted(set(shown.values()), reverse=True)
    marks = dict(zip(distinct, ("best", "second")))
    return pd.Series({k: marks.get(shown[k]) if k in shown else None for k in values.index}, dtype=object)


def _cell(score, lo, hi, mark, style: str, at: float | None = None, unit: str = "") -> str:
    if pd.isna(score):
        return "–"
    value = _pct(score)
    if style == "md":
        value = {"best": f"**{value}**", "second": f"<u>{value}</u>"}.get(mark, value)
        text = f"{value} ({_pct(lo)}–{_pct(hi)})" if pd.notna(lo) else value
        return text + (f" @{at:.3g} {unit}" if at is not None else "")
    value = {"best": rf"\textbf{{{value}}}", "second": rf"\underline{{{value}}}"}.get(mark, value)
    text = rf"{value}\,{{\scriptsize({_pct(lo)}--{_pct(hi)})}}" if pd.notna(lo) else value
    return text + (rf"\,{{\scriptsize @{at:.3g}}}" if at is not None else "")


def _axis(points: pd.DataFrame) -> str:
    axes = [a for a in points["budget_axis"].dropna().unique()] if "budget_axis" in points else []
    return str(axes[0]) if len(axes) == 1 else "nfe"


def _measured(row: pd.Series, axis: str) -> float | None:
    col = MEASURED_COLUMN.get(axis, "nfe")
    value = row.get(col)
    return None if value is None or pd.isna(value) else float(value)


def pick_at_budget(group: pd.DataFrame, budget: float | None, axis: str) -> tuple[pd.Series | None, float | None]:
    """The operating point of one sampler variant at `budget`. A variant run per budget: its run at that
    budget (with its measured compute when it is placed there: early-exit samplers, wall time). An adaptive
    variant (no budget, e.g. EB's gamma grid): the run with the largest measured compute not above the
    budget, returned with that compute. `budget=None`: the costliest run."""
    if budget is None:
        row = group.loc[pd.to_numeric(group["nfe"], errors="coerce").idxmax()]
        return row, None
    budgeted = group[group["budget"].notna()]
    if not budgeted.empty:
        hit = budgeted[(budgeted["budget"] - budget).abs() < 1e-9]
        if hit.empty:
            return None, None
        row = hit.iloc[0]
        return row, (_measured(row, axis) if row.get("sweep.placement") == "measured" else None)
    cost = group.apply(lambda r: _measured(r, axis), axis=1)
    ok = group[cost <= budget * (1 + 1e-9)]
    if ok.empty:
        return None, None
    best = ok.assign(_cost=cost[ok.index]).sort_values(["_cost", "score"], ascending=False).iloc[0]
    return best, float(best["_cost"])


def _columns(points: pd.DataFrame) -> list[tuple[str, int]]:
    return list(points[["task", "gen_length"]].drop_duplicates().itertuples(index=False, name=None))


def _variants(points: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(points["variant"]))


def _render(frame: pd.DataFrame, style: str, caption: str) -> str:
    if style == "md":
        return f"{caption}\n\n" + markdown(frame) + "\n"
    body = frame.to_latex(index=False, escape=False, column_format="l" + "c" * (frame.shape[1] - 1))
    return f"% {caption}\n" + body


def _latex_escape(text: str) -> str:
    return str(text).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


# --------------------------------------------------------------------------------------------- tables
def paper_table(points: pd.DataFrame, budget: float | None = None, style: str = "md") -> str:
    """Table 2 / 3 layout: one row per sampler variant, one column per (task, generation length);
    accuracy (%) at one compute budget per column (default: the largest budget of the column), best
    bold and second underlined per column."""
    axis = _axis(points)
    unit = AXIS_UNITS.get(axis, axis)
    columns = _columns(points)
    variants = _variants(points)
    table: dict[str, list[str]] = {"Method": [_latex_escape(v) if style == "tex" else v for v in variants]}
    budgets_used = []
    for task, length in columns:
        col = points[(points["task"] == task) & (points["gen_length"] == length)]
        fixed = col[col["sweep.placement"] == "budget"]["budget"].dropna()
        b = budget if budget is not None else (float(fixed.max()) if not fixed.empty else None)
        budgets_used.append(b)
        picked = {v: pick_at_budget(col[col["variant"] == v], b, axis) if (col["variant"] == v).any() else (None, None)
                  for v in variants}
        scores = pd.Series({v: (p[0]["score"] if p[0] is not None else float("nan")) for v, p in picked.items()})
        marks = rank_marks(scores)
        name = f"{task} L={length}" if style == "md" else f"{_latex_escape(task)} {length}"
        if b is not None:
            name += f" ({_budget_text(b)} {unit})" if style == "md" else rf" ({_budget_text(b)} {_latex_escape(unit)})"
        cells = []
        for v in variants:
            row, at = picked[v]
            if row is None:
                cells.append("–")
            else:
                cells.append(_cell(row["score"], row["score_ci_low"], row["score_ci_high"], marks[v], style, at, unit))
        table[name] = cells
    caption = (f"Accuracy (%) with 95% CI per task and generation length L at the compute budget in each header "
               f"({BUDGET_AXES.get(axis, axis)}); best in bold, second underlined"
               + ("; '@x': run placed at its measured compute x (adaptive samplers: the largest x <= budget)" if any(
                   points["sweep.placement"] == "measured") else ""))
    return _render(pd.DataFrame(table), style, caption)


def budget_table(points: pd.DataFrame, style: str = "md") -> str:
    """Compute-matched accuracy: per (task, length), one row per sampler variant, one column per budget;
    best bold and second underlined per budget."""
    axis = _axis(points)
    unit = AXIS_UNITS.get(axis, axis)
    parts = []
    for task, length in _columns(points):
        col = points[(points["task"] == task) & (points["gen_length"] == length)]
        budgets = sorted(col["budget"].dropna().unique())
        if not budgets:
            continue
        variants = _variants(col)
        table: dict[str, list[str]] = {"Method": [_latex_escape(v) if style == "tex" else v for v in variants]}
        for b in budgets:
            picked = {v: pick_at_budget(col[col["variant"] == v], b, axis) for v in variants}
            scores = pd.Series({v: (p[0]["score"] if p[0] is not None else float("nan")) for v, p in picked.items()})
            marks = rank_marks(scores)
            table[f"{_budget_text(b)} {unit}"] = [
                "–" if picked[v][0] is None else _cell(picked[v][0]["score"], picked[v][0]["score_ci_low"],
                                                       picked[v][0]["score_ci_high"], marks[v], style, picked[v][1], unit)
                for v in variants
            ]
        model = col["model"].iloc[0]
        caption = (f"{task} (L={length}, model {model}): accuracy (%) with 95% CI at matched compute "
                   f"({BUDGET_AXES.get(axis, axis)}); best bold, second underlined"
                   + ("; '@x': run placed at its measured compute x (adaptive samplers: the largest x <= budget)"
                      if (col["sweep.placement"] == "measured").any() else ""))
        parts.append(_render(pd.DataFrame(table), style, caption))
    return "\n".join(parts) if parts else "(no budgeted runs)\n"


def ablation_table(points: pd.DataFrame, style: str = "md") -> str:
    """Table 5 layout: one row per variant (per budget when there are several): accuracy with its 95%
    interval, compute per sequence and end-to-end runtime of the evaluation."""
    parts = []
    for task, length in _columns(points):
        col = points[(points["task"] == task) & (points["gen_length"] == length)]
        hours = pd.to_numeric(col["wall_time_s"], errors="coerce").max() > 3600
        runtime = col["wall_time_s"].map(lambda s: _num(s / 3600 if hours else s, 2 if hours else 1))
        metric = str(col["primary_metric"].iloc[0]) if "primary_metric" in col else "score"
        several = col["budget"].nunique() > 1
        frame = pd.DataFrame({
            "Method / Variant": [_latex_escape(v) if style == "tex" else v for v in col["variant"]],
            **({"budget": col["budget"].map(lambda b: "–" if pd.isna(b) else _budget_text(b))} if several else {}),
            f"{task} {metric} (%)": [_cell(s, lo, hi, None, style) for s, lo, hi in
                                     zip(col["score"], col["score_ci_low"], col["score_ci_high"])],
            "NFE": col["nfe"].map(_num),
            "fwd-eq": col["forward_equivalents"].map(_num),
            "backwards": col["backwards"].map(_num),
            "Runtime (h)" if hours else "Runtime (s)": runtime,
        })
        caption = (f"{task} (L={length}, model {col['model'].iloc[0]}): accuracy (%) with 95% CI, mean compute per "
                   f"sequence and end-to-end evaluation runtime")
        parts.append(_render(frame, style, caption))
    return "\n".join(parts)


def cells_table(points: pd.DataFrame) -> str:
    """Every operating point (Markdown) with its knob, all compute counts and the budget check."""
    def check(v) -> str:
        return "–" if v is None or pd.isna(v) else ("yes" if bool(v) else "NO")

    frame = pd.DataFrame({
        "task": points["task"],
        "L": points["gen_length"],
        "variant": points["variant"],
        "budget": points["budget"].map(lambda b: "–" if pd.isna(b) else _budget_text(b)),
        "knob": [f"{k}={_budget_text(v)}" if pd.notna(k) and pd.notna(v) else f"steps={s}"
                 for k, v, s in zip(points["sweep.knob"], points["sweep.knob_value"], points["steps"])],
        "n": points["n_examples"].astype(int),
        "score %": points["score"].map(_pct),
        "95% CI": [_ci_text(lo, hi) for lo, hi in zip(points["score_ci_low"], points["score_ci_high"])],
        "NFE": points["nfe"].map(_num),
        "NFE to stop": points["nfe_to_stop"].map(_num),
        "fwd": points["forwards"].map(_num),
        "bwd": points["backwards"].map(_num),
        "fwd-eq": points["forward_equivalents"].map(_num),
        "wall s": points["wall_time_s"].map(_num),
        "within 1 step": points["sweep.within_one_step"].map(check),
    })
    return markdown(frame) + "\n"


__all__ = ["ablation_table", "budget_table", "cells_table", "format_summary_table", "markdown", "paper_table", "pick_at_budget",
           "rank_marks", "summary_frame"]
