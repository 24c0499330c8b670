"""Tidy result rows (docs/design.md "Results"): one row per (run, example) plus one summary row per run.

A run ("cell": model x sampler x task x decoding settings x seed) writes all its rows at once to
`<results_dir>/rows/<cell_id>.jsonl` through a temporary file and `os.replace`, so a file is either
complete or absent: a killed sweep never leaves partial rows, and a rerun skips cells whose file
exists.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROWS_DIR = "rows"


def cell_id(identity: Mapping[str, Any]) -> str:
    """Stable short id of a cell from the settings that define it (order-independent)."""
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cell_path(results_dir: str | Path, cid: str) -> Path:
    return Path(results_dir) / ROWS_DIR / f"{cid}.jsonl"


def is_complete(results_dir: str | Path, cid: str) -> bool:
    return cell_path(results_dir, cid).is_file()


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_cell(results_dir: str | Path, cid: str, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Atomically write a cell's rows (all or nothing)."""
    target = cell_path(results_dir, cid)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{cid}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            for row in rows:
                fh.write(json.dumps({k: _clean(v) for k, v in row.items()}, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_rows(results_dir: str | Path) -> list[dict]:
    """All rows under `results_dir` (recursively: a sweep directory holds many run folders)."""
    rows: list[dict] = []
    for path in sorted(Path(results_dir).rglob(f"{ROWS_DIR}/*.jsonl")):
        with path.open() as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return rows


def wilson_interval(successes: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (robust for small n and p near 0 or 1)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
