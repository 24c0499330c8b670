"""`boe-report <results dir>`: all rows -> pandas -> paper tables (Markdown + LaTeX) and Pareto plots
(PNG + PDF), written next to the rows (issue 7).

    boe-report results/tiny_sudoku_nfe                 # x axis: the sweep's budget axis
    boe-report results/tiny_sudoku_nfe --x nfe_to_stop --budget 32
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from boe_eval.analysis.load import load_results
from boe_eval.analysis.plots import AXIS_COLUMN, X_LABELS, plot_pareto
from boe_eval.analysis.tables import ablation_table, budget_table, cells_table, paper_table
from boe_eval.store import write_text_atomic


_write = write_text_atomic


def default_x(points) -> str:
    axes = list(points["budget_axis"].dropna().unique()) if "budget_axis" in points else []
    return AXIS_COLUMN.get(str(axes[0]), "nfe") if len(axes) == 1 else "nfe"


def write_report(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    x: str | None = None,
    budget: float | None = None,
    plot: bool = True,
) -> list[Path]:
    """Write the tables and plots of every cell under `results_dir`; returns the files written."""
    points = load_results(results_dir)
    out = Path(out_dir) if out_dir is not None else Path(results_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        from boe_eval.store import StoreError, describe_os_error

        raise StoreError(describe_os_error(err, out)) from None
    x = x or default_x(points)
    if x not in X_LABELS:
        raise ValueError(f"--x {x!r} is invalid: choose one of {', '.join(X_LABELS)}")
    written = [
        _write(out / "cells.md", cells_table(points)),
        _write(out / "accuracy_by_budget.md", budget_table(points, "md")),
        _write(out / "accuracy_by_budget.tex", budget_table(points, "tex")),
        _write(out / "table_main.md", paper_table(points, budget, "md")),
        _write(out / "table_main.tex", paper_table(points, budget, "tex")),
        _write(out / "table_ablation.md", ablation_table(points, "md")),
        _write(out / "table_ablation.tex", ablation_table(points, "tex")),
    ]
    written.append(_write(out / "points.csv", points.to_csv(index=False)))
    if plot:
        with _reproducible_dates():
            written += plot_pareto(points, out / f"pareto_{x}", x=x)
    return written


@contextlib.contextmanager
def _reproducible_dates():
    """Matplotlib stamps PDFs with the time of writing unless `SOURCE_DATE_EPOCH` is set: pin it (to
    the epoch, unless the caller set it), so the same rows always give byte-identical plots."""
    saved = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boe-report", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", help="folder holding rows/*.jsonl (searched recursively)")
    parser.add_argument("--out", default=None, help="where to write tables and plots (default: results_dir)")
    parser.add_argument("--x", default=None, choices=sorted(X_LABELS),
                        help="compute axis of the Pareto plot (default: the sweep's budget axis)")
    parser.add_argument("--budget", type=float, default=None,
                        help="budget of the main (Table 2/3) table (default: each column's largest)")
    parser.add_argument("--no-plot", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    from boe_eval.store import print_store_warnings

    print_store_warnings("boe-report")  # a damaged cell: one warning line, the report of the others
    try:
        written = write_report(args.results_dir, args.out, args.x, args.budget, plot=not args.no_plot)
    except (OSError, ValueError) as err:  # missing folder, no complete cell, cells that must not pool, full disk
        print(f"boe-report: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    print()
    print((Path(args.out or args.results_dir) / "accuracy_by_budget.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
