"""Result rows -> pandas (issue 7). Reads every `rows/*.jsonl` under a results folder (a sweep run in
one process and a Hydra multirun land in the same layout) into one DataFrame per row type.

Only cells whose file verifies are read (`boe_eval.store`: damaged files are skipped with a
warning). Seeds of one operating point are pooled only when their cells agree on everything that
makes them the same experiment (`MUST_AGREE`: model directory, limit, dtype, task, code commit and the
sampler's parameters) and have distinct seeds; anything else is one `PoolingError` naming the field,
both values and both cell files, never a silent mix (e.g. a `limit=20` run written into a folder of
`limit=500` cells)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from boe_eval.analysis.intervals import accuracy_ci
from boe_eval.store import ROWS_DIR, read_rows

#: columns every summary frame has, filled with NA for rows written outside a sweep
SWEEP_COLUMNS = ("budget_axis", "budget", "variant", "sweep.knob", "sweep.knob_value", "sweep.placement",
                 "sweep.measured_cost", "sweep.planned_cost", "sweep.step_cost", "sweep.budget_gap",
                 "sweep.within_one_step", "sweep.order", "nfe_to_stop", "backwards", "forward_equivalents")


def load_rows(results_dir: str | Path) -> pd.DataFrame:
    """All rows (examples and summaries), one cell counted once even if its file was copied."""
    path = Path(results_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"results folder {str(path)!r} does not exist")
    rows = read_rows(path)
    if not rows:
        raise FileNotFoundError(f"results folder {str(path)!r} holds no complete cells (expected verified rows/*.jsonl)")
    df = pd.DataFrame(rows)
    if "cell_id" in df:
        key = ["cell_id", "row_type", "lm_eval_subtask", "doc_id"]
        df = df.drop_duplicates(subset=[c for c in key if c in df], keep="first")
    return df.reset_index(drop=True)


def summary_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per cell: the summary row, with the accuracy's 95% interval recomputed from the
    cell's example rows (Wilson for pass/fail, bootstrap otherwise) and sweep fields filled."""
    summaries = rows[rows["row_type"] == "summary"].copy()
    examples = rows[rows["row_type"] == "example"]
    for col in SWEEP_COLUMNS:
        if col not in summaries:
            summaries[col] = pd.NA
    summaries["variant"] = summaries["variant"].fillna(summaries["sampler"])
    # decoding seconds per sequence (the meter shares each call's time among the rows it served)
    summaries["seconds_per_sequence"] = pd.to_numeric(summaries.get("decode_time_s"), errors="coerce") / \
        pd.to_numeric(summaries["n_examples"], errors="coerce")
    cis = {}
    if "cell_id" in examples and not examples.empty:
        for cid, group in examples.groupby("cell_id"):
            cis[cid] = accuracy_ci(group["score"].tolist())
        if {"nfe_to_stop", "nfe"} <= set(examples):
            # EB-Sampler generate-until NFE: a sequence that never meets its stop condition counts its full NFE
            to_stop = pd.to_numeric(examples["nfe_to_stop"], errors="coerce").fillna(
                pd.to_numeric(examples["nfe"], errors="coerce"))
            means = to_stop.groupby(examples["cell_id"]).mean()
            known = summaries["cell_id"].isin(means.index)
            summaries.loc[known, "nfe_to_stop"] = summaries.loc[known, "cell_id"].map(means)
    lows, highs, methods = [], [], []
    for _, row in summaries.iterrows():
        ci = cis.get(row.get("cell_id"))
        if ci is None:
            lows.append(row.get("score_ci_low"))
            highs.append(row.get("score_ci_high"))
            methods.append("wilson" if pd.notna(row.get("score_ci_low")) else "none")
        else:
            lows.append(ci[1])
            highs.append(ci[2])
            methods.append(ci[3])
    summaries["score_ci_low"] = pd.to_numeric(pd.Series(lows, index=summaries.index), errors="coerce")
    summaries["score_ci_high"] = pd.to_numeric(pd.Series(highs, index=summaries.index), errors="coerce")
    summaries["ci_method"] = methods
    summaries["budget"] = pd.to_numeric(summaries["budget"], errors="coerce")
    summaries["sweep.knob_value"] = pd.to_numeric(summaries["sweep.knob_value"], errors="coerce")
    if "sweep.order" not in summaries:
        summaries["sweep.order"] = pd.NA
    summaries["sweep.order"] = pd.to_numeric(summaries["sweep.order"], errors="coerce")
    sort = ["task", "gen_length", "sweep.order", "variant", "budget", "sweep.knob_value", "seed"]
    return summaries.sort_values([c for c in sort if c in summaries], na_position="last").reset_index(drop=True)


#: what makes two cells the same operating point apart from their seed
POINT_KEY = ("model", "task", "gen_length", "block_length", "temperature", "early_stop", "variant", "sampler",
             "budget_axis", "budget", "steps", "sweep.knob_value")
#: compute columns averaged over seeds
COMPUTE_COLUMNS = ("nfe", "nfe_to_stop", "forwards", "backwards", "forward_equivalents", "tokens_processed",
                   "forward_flops", "flops",
                   "wall_time_s", "decode_time_s", "seconds_per_sequence", "sweep.measured_cost", "sweep.budget_gap")


#: what the cells pooled into one operating point must share (besides POINT_KEY): cells that differ
#: in one of these (or in a `sampler.*` parameter) are different experiments, never seeds of one
MUST_AGREE = ("model_path", "limit", "dtype", "lm_eval_task", "apply_chat_template", "git_commit")


class PoolingError(ValueError):
    """Cells of different experiments would be pooled as seeds of one operating point."""


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or dict value
        return False


def _same(a, b) -> bool:
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    return bool(a == b)


def _plain(value):
    """A numpy scalar as the Python value it holds (so messages read `500`, not `np.int64(500)`)."""
    return value.item() if hasattr(value, "item") else value


def _where(cid) -> str:
    """How an error names a cell's file: a pattern matching `<slug>-<cid>.jsonl` and the older `<cid>.jsonl`."""
    return f"{ROWS_DIR}/*{cid}.jsonl" if isinstance(cid, str) else "a planned cell"


def check_pooling(cells: pd.DataFrame) -> None:
    """Raise PoolingError when two cells of one operating point differ in a `MUST_AGREE` field or a
    sampler parameter, or share a seed (then they are not two seeds of one experiment)."""
    key = [c for c in POINT_KEY if c in cells]
    agree = [c for c in cells.columns if c in MUST_AGREE or c.startswith("sampler.")]
    for _, group in cells.groupby(key, dropna=False, sort=False):
        if len(group) < 2:
            continue
        first = group.iloc[0]
        what = f"{first.get('variant') or first.get('sampler')}"
        if pd.notna(first.get("budget")):
            what += f" at budget {first.get('budget'):g}"
        elif pd.notna(first.get("steps")):
            what += f" at steps {first.get('steps')}"
        for col in agree:
            for _, other in group.iloc[1:].iterrows():
                if not _same(first[col], other[col]):
                    raise PoolingError(
                        f"cells {_where(first.get('cell_id'))} and {_where(other.get('cell_id'))} ({what}) differ in "
                        f"{col}: {_plain(first[col])!r} vs {_plain(other[col])!r}: results of different runs never pool; "
                        "keep each run in its own output folder")
        if "seed" in group and group["seed"].duplicated().any():
            seed = group.loc[group["seed"].duplicated(), "seed"].iloc[0]
            twins = group[group["seed"] == seed]["cell_id"].tolist() if "cell_id" in group else []
            raise PoolingError(
                f"cells {' and '.join(_where(c) for c in twins[:2])} ({what}) are two runs with seed {_plain(seed)} that "
                "differ in a setting outside the operating point: results of different runs never pool; "
                "keep each run in its own output folder")


def planned_summary(columns: Mapping, cid: str, knob_value=None, code: str | None = None) -> dict:
    """The summary row a planned cell will write, as far as `check_pooling` compares it: the cell
    spec's own columns (`CellSpec.columns()`), its id, its knob and the code, so a run can be checked
    against a results folder before any model is loaded."""
    from boe_eval.provenance import git_commit

    return {"row_type": "summary", "cell_id": cid, **columns, "sweep.knob_value": knob_value,
            "git_commit": code if code is not None else git_commit()}


def check_store_accepts(results_dir: str | Path, planned: list[dict]) -> None:
    """Raise PoolingError when the cells a run plans (`planned_summary` rows) would pool with cells
    already in `results_dir` that belong to a different experiment (other limit, model directory,
    dtype, code...), before anything is computed. Planned cells already complete are reused."""
    existing = [r for r in read_rows(results_dir) if r.get("row_type") == "summary"] \
        if Path(results_dir).is_dir() else []
    if not existing:
        return
    done = {r.get("cell_id") for r in existing}
    new = [{**p, "cell_id": None} for p in planned if p["cell_id"] not in done]
    if not new:
        return
    frame = pd.DataFrame(existing + new)
    for col in SWEEP_COLUMNS:
        if col not in frame:
            frame[col] = pd.NA
    frame["variant"] = frame["variant"].fillna(frame["sampler"])
    for col in ("budget", "sweep.knob_value"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    check_pooling(frame)


def pool_seeds(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per operating point: seeds pooled (score = mean over all their examples, interval from
    the pooled examples, compute averaged); `n_seeds` says how many were pooled. Cells that are not
    seeds of one experiment raise PoolingError (`check_pooling`)."""
    cells = summary_frame(rows)
    check_pooling(cells)
    key = [c for c in POINT_KEY if c in cells]
    examples = rows[rows["row_type"] == "example"]
    by_cell = {cid: g["score"].tolist() for cid, g in examples.groupby("cell_id")} if "cell_id" in examples else {}
    out = []
    for _, group in cells.groupby(key, dropna=False, sort=False):
        first = group.iloc[0].copy()
        if len(group) > 1:
            scores = [s for cid in group["cell_id"] for s in by_cell.get(cid, [])]
            mean, low, high, method = accuracy_ci(scores)
            first["score"], first["score_ci_low"], first["score_ci_high"], first["ci_method"] = mean, low, high, method
            first["n_examples"] = len(scores)
            for col in COMPUTE_COLUMNS:
                if col in group:
                    first[col] = pd.to_numeric(group[col], errors="coerce").mean()
            first["sweep.within_one_step"] = group["sweep.within_one_step"].dropna().all() if \
                group["sweep.within_one_step"].notna().any() else pd.NA
        first["n_seeds"] = len(group)
        out.append(first)
    return pd.DataFrame(out).reset_index(drop=True)


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """Operating points (seeds pooled) of every cell under `results_dir`."""
    return pool_seeds(load_rows(results_dir))


__all__ = ["MUST_AGREE", "PoolingError", "check_pooling", "check_store_accepts", "planned_summary", "load_results", "load_rows", "pool_seeds", "summary_frame"]
