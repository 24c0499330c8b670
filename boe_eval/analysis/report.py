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


def rows_index(rows_dir: Path) -> str | None:
    """`rows.md` next to `rows/`: which cell each row file holds (row files are named `<slug>-<hash>.jsonl`, older ones by
    the hash of their settings alone). One line per complete cell, from its summary row; None when the folder holds
    none."""
    import pandas as pd

    from boe_eval.analysis.tables import MISSING, _pct, markdown
    from boe_eval.store import verify_file

    lines = []
    for path in sorted(rows_dir.glob("*.jsonl")):
        check = verify_file(path)
        summary = next((r for r in check.rows or [] if r.get("row_type") == "summary"), None) if check.ok else None
        if summary is None:
            continue
        params = ", ".join(f"{k.removeprefix('sampler.')}={v}" for k, v in sorted(summary.items())
                           if k.startswith("sampler.") and v is not None)
        lines.append({"rows file": path.name, "variant": summary.get("variant") or summary.get("sampler"),
                      "sampler params": params or MISSING, "task": summary.get("task"),
                      "L": summary.get("gen_length"), "steps": summary.get("steps"), "seed": summary.get("seed"),
                      "budget": MISSING if summary.get("budget") is None else f"{float(summary['budget']):g}",
                      "n": summary.get("n_examples"), "score %": _pct(summary.get("score"))})
    if not lines:
        return None
    readable = any("-" in line["rows file"] for line in lines)  # `<slug>-<cell id>.jsonl` (store.cell_file_name)
    naming = ("its name says the sampler, its knob, the budget or steps and the cache, and ends with the hash of the "
              "cell's settings" if readable else "its name is the hash of the cell's settings")
    return ("# Row files (`rows/`)\n\nEach file holds one cell (its examples, its summary row, a completion record); "
            f"{naming}. Written by boe-report / boe-eval.\n\n" + markdown(pd.DataFrame(lines)) + "\n")


def write_rows_indexes(results_dir: str | Path) -> list[Path]:
    """A `rows.md` next to every `rows/` folder under `results_dir` saying which cell each of its files holds (beside
    the folder, not in it: `rows/` holds only cell files and their locks)."""
    written = []
    for rows_dir in sorted({p.parent for p in Path(results_dir).rglob("rows/*.jsonl")}):
        text, path = rows_index(rows_dir), rows_dir.parent / "rows.md"
        if text is not None and not (path.is_file() and path.read_text() == text):  # a rerun that adds nothing
            written.append(_write(path, text))  # leaves the rows folder untouched
    return written


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
    if out_dir is None or Path(out_dir).resolve() == Path(results_dir).resolve():
        written.extend(write_rows_indexes(results_dir))
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
