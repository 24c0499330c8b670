"""Plots of results (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from boe_eval.compute_axes import X_AXES  # noqa: E402


def plot_summary(summaries: Sequence[dict], results_dir: str | Path, compute: str = "nfe") -> Path:
    """A job's plot in `results_dir`, named after what it shows: `<task>_<metric>_vs_<compute>.png` (score
    against mean compute per sequence) or, when every sampler spent the same compute,
    `<task>_<metric>_by_sampler.png` (bars)."""
    first = summaries[0]
    metric = str(first.get("primary_metric") or "score")
    same = len({round(float(r.get(compute) or 0), 6) for r in summaries}) == 1
    name = f"{first.get('task')}_{metric}_" + ("by_sampler" if same else f"vs_{compute}")
    return plot_score_vs_compute(summaries, Path(results_dir) / f"{_file_safe(name)}.png", compute)


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def plot_score_vs_compute(summaries: Sequence[dict], path: str | Path, compute: str = "nfe") -> Path:
    """Score (%) with its 95% interval against mean compute per sequence, one point per sampler (bars when
    every sampler spent the same compute). The title names the model, the task and n."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    label = {"nfe": "NFE per sequence (denoiser calls)", "forward_equivalents": "forward-equivalents per sequence",
             "wall_time_s": "wall time (s)"}.get(compute, compute)
    if len({round(float(r.get(compute) or 0), 6) for r in summaries}) == 1:
        # every sampler spent the same compute: compare them as bars at that compute
        names = [_name(r) for r in summaries]
        ys = [100 * r["score"] for r in summaries]
        errs = [[y - 100 * (r.get("score_ci_low") if r.get("score_ci_low") is not None else r["score"]) for y, r in zip(ys, summaries)],
                [100 * (r.get("score_ci_high") if r.get("score_ci_high") is not None else r["score"]) - y for y, r in zip(ys, summaries)]]
        # no interval (NaN): no bar; a score at an end of [0, 1] can sit a rounding error outside its Wilson bound
        errs = [[0.0 if e != e else max(e, 0.0) for e in side] for side in errs]
        ax.bar(names, ys, yerr=errs, capsize=4, color=[f"C{i}" for i in range(len(names))], alpha=0.85)
        for i, y in enumerate(ys):  # the value above its interval, not on the error bar
            ax.annotate(f"{y:.1f}", (i, y + errs[1][i]), textcoords="offset points", xytext=(0, 3), ha="center",
                        fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        return _finish(fig, ax, summaries, f"sampler (all at {float(summaries[0].get(compute)):g} {label}; bars: 95% CI)", path)
    for row in summaries:
        x, y = row.get(compute), 100 * row["score"]
        lo, hi = row.get("score_ci_low"), row.get("score_ci_high")
        yerr = None
        if lo is not None and hi is not None and lo == lo and hi == hi:
            yerr = [[max(y - 100 * lo, 0.0)], [max(100 * hi - y, 0.0)]]  # rounding at a score of 0 or 1
        ax.errorbar([x], [y], yerr=yerr, fmt="o", capsize=3, label=_name(row))
        ax.annotate(_name(row), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _finish(fig, ax, summaries, label, path)


def _name(summary: dict) -> str:
    """A run's display name: its variant label when it has one, else the sampler."""
    return str(summary.get("variant") or summary["sampler"])


def _finish(fig, ax, summaries: Sequence[dict], xlabel: str, path: Path) -> Path:
    """Axis labels and a title naming the model, the task and n from the summary rows; save and close."""
    first = summaries[0]
    ns = sorted({int(r.get("n_examples") or 0) for r in summaries})
    n_text = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}-{ns[-1]}"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{first.get('primary_metric', 'score')} (%), 95% Wilson CI")
    ax.set_title(f"model {first.get('model')} on task {first.get('task')} ({n_text} examples per sampler)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- Pareto
X_LABELS = dict(X_AXES)
#: budget axis of a sweep -> the measured column plotted for it
AXIS_COLUMN = {"steps": "nfe", "nfe": "nfe", "forward_equivalents": "forward_equivalents",
               "wall_time": "seconds_per_sequence"}


def pareto_mask(x: Sequence[float], y: Sequence[float]) -> list[bool]:
    """Points on the accuracy-compute frontier: no other point has compute <= and accuracy >= with one
    of them strict (minimise x, maximise y). NaN points are never on it."""
    import math

    pts = [(float(a), float(b)) for a, b in zip(x, y)]
    out = []
    for i, (xi, yi) in enumerate(pts):
        if math.isnan(xi) or math.isnan(yi):
            out.append(False)
            continue
        dominated = any(
            (xj <= xi and yj >= yi and (xj < xi or yj > yi))
            for j, (xj, yj) in enumerate(pts)
            if j != i and not (math.isnan(xj) or math.isnan(yj))
        )
        out.append(not dominated)
    return out


def plot_pareto(points, stem: str | Path, x: str = "nfe", title: str | None = None) -> list[Path]:
    """Accuracy (%) with 95% CI against measured compute per sequence: one panel per (task, length),
    one line per sampler variant, the frontier over all variants marked. Writes `<stem>.png` and
    `<stem>.pdf`."""
    import numpy as np

    stem = Path(stem)
    panels = list(points[["task", "gen_length"]].drop_duplicates().itertuples(index=False, name=None))
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.0 * nrows), dpi=150, squeeze=False)
    variants = list(dict.fromkeys(points["variant"]))
    colours = {v: plt.get_cmap("tab10" if len(variants) <= 10 else "tab20")(i) for i, v in enumerate(variants)}
    markers = dict(zip(variants, "osD^vP*Xh<>p" * 3))
    for ax, (task, length) in zip(axes.flat, panels):
        panel = points[(points["task"] == task) & (points["gen_length"] == length)]
        xs_all = pd_numeric(panel[x])
        ys_all = 100 * pd_numeric(panel["score"])
        for variant in variants:
            part = panel[panel["variant"] == variant]
            if part.empty:
                continue
            order = np.argsort(pd_numeric(part[x]), kind="stable")
            part = part.iloc[order]
            xs, ys = pd_numeric(part[x]), 100 * pd_numeric(part["score"])
            lo, hi = 100 * pd_numeric(part["score_ci_low"]), 100 * pd_numeric(part["score_ci_high"])
            yerr = np.vstack([np.clip(ys - lo, 0, None), np.clip(hi - ys, 0, None)])
            yerr = np.nan_to_num(yerr)
            adaptive = (part["sweep.placement"] == "measured").any()
            ax.errorbar(xs, ys, yerr=yerr, color=colours[variant], marker=markers[variant], ms=5, lw=1.4,
                        ls="--" if adaptive else "-", capsize=2.5, elinewidth=0.8, alpha=0.9,
                        label=variant + (" (measured)" if adaptive else ""))
            knob = part["sweep.knob"].dropna().unique()
            if len(knob) == 1 and knob[0] not in ("steps", None):  # adaptive: label each point by its knob
                symbol = {"gamma": "γ", "threshold": "τ", "factor": "f", "base": "a"}.get(str(knob[0]), str(knob[0]))
                for xv, yv, kv in zip(xs, ys, pd_numeric(part["sweep.knob_value"])):
                    if np.isfinite(xv) and np.isfinite(yv) and np.isfinite(kv):
                        ax.annotate(f"{symbol}={kv:g}", (xv, yv), textcoords="offset points", xytext=(3, -9),
                                    fontsize=6, color=colours[variant])
        on = pareto_mask(xs_all, ys_all)
        fx, fy = xs_all[on], ys_all[on]
        if len(fx):
            order = np.argsort(fx, kind="stable")
            # the frontier holds its best accuracy out to the costliest point of the panel
            sx = np.append(fx[order], np.nanmax(xs_all))
            sy = np.append(fy[order], fy[order][-1])
            ax.step(sx, sy, where="post", color="black", lw=2.4, alpha=0.45, zorder=0, label="Pareto frontier")
            ax.scatter(fx, fy, s=110, facecolors="none", edgecolors="black", lw=1.2, zorder=5)
        finite = xs_all[np.isfinite(xs_all) & (xs_all > 0)]
        if len(finite) and finite.max() / finite.min() >= 4:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        budgets = sorted(set(pd_numeric(panel["budget"])[np.isfinite(pd_numeric(panel["budget"]))]))
        axis_of_budgets = {AXIS_COLUMN.get(str(a)) for a in panel["budget_axis"].dropna().unique()}
        if budgets and axis_of_budgets == {x} and len(budgets) <= 12:
            # ticks at the assigned budgets, plus powers of two where measured points lie outside them
            lo, hi = np.nanmin(finite), np.nanmax(finite)
            extra = [2.0**k for k in range(-10, 20) if lo / 1.5 <= 2.0**k <= hi and
                     all(abs(np.log2(2.0**k / b)) > 0.35 for b in budgets)]
            ax.set_xticks(sorted(set(budgets) | set(extra)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        metric = str(panel["primary_metric"].iloc[0]) if "primary_metric" in panel else "score"
        ax.set_xlabel(X_LABELS.get(x, x), fontsize=8)
        ax.set_ylabel(f"{metric} (%), 95% CI", fontsize=9)
        ax.set_title(f"{task}, L={length}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in list(axes.flat)[1 : len(panels)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    ncol = max(2, min(len(seen), 3 * ncols))
    fig.legend(list(seen.values()), list(seen.keys()), loc="upper center", ncol=ncol, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    model = str(points["model"].iloc[0]) if "model" in points else ""
    fig.suptitle(title or f"Accuracy vs compute ({model}); circled: Pareto frontier", fontsize=11)
    fig.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path, bbox_inches="tight")
        out.append(path)
    plt.close(fig)
    return out


def pd_numeric(series):
    """A column as a float numpy array (None/NA -> NaN)."""
    import pandas as pd

    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
