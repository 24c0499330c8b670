"""Tidy result rows (docs/design.md "Results"): one row per (run, example) plus one summary row per run.

A run ("cell": model x sampler x task x decoding settings x seed) writes all its rows at once to
`<results_dir>/rows/<slug>-<cell_id>.jsonl` (the slug says which cell it is: sampler, knob, budget or steps,
cache; `cell_file_name`; folders written before hold `<cell_id>.jsonl`, found and resumed the same way) through a
temporary file and `os.replace`, so a killed sweep never leaves a partial file under the cell's name. The file
ends with a *completion record* (`{"row_type": "cell_complete", "n_rows": N, "sha256": ..., "identity": {...}}`: the number and the
SHA-256 of the row lines before it, and the settings that define the cell). A cell counts as complete
only if its file verifies:

* a file with a completion record verifies when its row count and checksum match;
* a file written before completion records existed (the committed `results/` cells) verifies when
  every line parses, the file ends with a newline and its last row is the summary row whose
  `n_examples` equals the number of example rows before it (a file cut at any point fails this);
* anything else (emptied, cut mid-line, cut at a line boundary, edited) is *damaged*: it is never
  counted complete, a rerun recomputes it (with a warning), and readers skip it with a warning.

Concurrent writers: `claim_cell` takes a per-cell lock (`fcntl.flock` on `rows/.<cell_id>.lock`), so
two sweeps into one folder never compute the same cell twice. Environment failures while writing
(full disk, read-only folder, a file where a folder should be) raise `StoreError`: one line naming
the path and the reason; the temporary file is removed on every error path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boe_eval.errors import ConfigError

ROWS_DIR = "rows"
COMPLETION = "cell_complete"  #: row_type of the completion record (the last line of a cell file)
STORE_FORMAT = 2  #: 1 = files without a completion record (verified by their summary row)


class StoreError(ConfigError):
    """The results store cannot be written or read (full disk, read-only folder, a path that is a
    file...): one line naming the path and the reason. Exit code 2 like every bad input."""


class DamagedCellWarning(UserWarning):
    """A cell file that does not verify (it is recomputed by a rerun and skipped by readers)."""


def cell_id(identity: Mapping[str, Any]) -> str:
    """Stable short id of a cell from the settings that define it (order-independent)."""
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _slug_part(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_.")


def cell_file_name(cid: str, identity: Mapping[str, Any] | None = None,
                   summary: Mapping[str, Any] | None = None) -> str:
    """The name of a new cell file: `<slug>-<cid>.jsonl`, the slug saying which cell it is (sampler variant, e.g.
    `lookum_control_random`, else the sampler; its swept knob
    when it is not the steps, the budget on its axis or else the steps, the cache when it is on: e.g.
    `boe-nfe64-<cid>`, `eb-gamma0.01-steps256-<cid>`, `threshold-threshold0.9-steps12-dual-<cid>`); the cell id (the
    hash of its settings) keeps names unique and is the cell's identity. Without a sampler in `identity` the name
    is `<cid>.jsonl`, as every file written before readable names (both are read: `find_cell_file`)."""
    identity, summary = identity or {}, summary or {}
    if not identity.get("sampler"):
        return f"{cid}.jsonl"
    parts = [summary.get("variant") or identity.get("extra.variant") or identity["sampler"]]
    knob, value = summary.get("sweep.knob"), summary.get("sweep.knob_value")
    if knob and knob != "steps" and value is not None:
        parts.append(f"{_slug_part(knob)}{_slug_part(value)}")
    budget = identity.get("extra.budget")
    if budget is not None:
        parts.append(f"{_slug_part(identity.get('extra.budget_axis') or 'budget')}{_slug_part(budget)}")
    elif identity.get("steps") is not None:
        parts.append(f"steps{_slug_part(identity['steps'])}")
    if identity.get("cache") not in (None, "none"):
        parts.append(identity["cache"])
    slug = "-".join(p for p in (_slug_part(part) for part in parts) if p)
    return f"{slug}-{cid}.jsonl"


def cell_id_of(path: str | Path) -> str:
    """The cell id a cell file's name ends with (`<slug>-<cid>.jsonl` or `<cid>.jsonl`)."""
    return Path(path).stem.rsplit("-", 1)[-1]


def find_cell_file(results_dir: str | Path, cid: str) -> Path | None:
    """The file of cell `cid` in `results_dir/rows`, under its readable or its plain (older) name, or None."""
    rows = Path(results_dir) / ROWS_DIR
    plain = rows / f"{cid}.jsonl"
    if plain.exists():
        return plain
    return next(iter(sorted(rows.glob(f"*-{glob.escape(cid)}.jsonl"))), None)


def cell_path(results_dir: str | Path, cid: str) -> Path:
    """The file of cell `cid` when it exists (under either name, `find_cell_file`), else `rows/<cid>.jsonl`."""
    return find_cell_file(results_dir, cid) or Path(results_dir) / ROWS_DIR / f"{cid}.jsonl"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def describe_os_error(err: OSError, path: str | Path) -> str:
    """One line for an environment failure on `path` (full disk, read-only, not a folder...)."""
    reason = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOTDIR: "a path component is a file, not a folder",
        errno.EEXIST: "a file of that name exists where a folder is needed",
        errno.ENAMETOOLONG: "the file name is too long",
    }.get(err.errno or 0, err.strerror or type(err).__name__)
    return f"cannot write results to {str(path)!r}: {reason}"


def write_text_atomic(path: Path, text: str) -> Path:
    """Atomic text write (a report rewritten by concurrent multirun jobs is never half a file); the
    temporary file is removed on every error path (full disk, read-only folder), which raises
    `StoreError` (one line)."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise StoreError(describe_os_error(err, path)) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def ensure_results_dir(results_dir: str | Path) -> Path:
    """Create `results_dir/rows` (or fail with one line: a file in the way, read-only, full disk)."""
    folder = check_output_dir(results_dir)
    try:
        (folder / ROWS_DIR).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder / ROWS_DIR)  # read-only, no inodes...
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise StoreError(describe_os_error(err, folder)) from None
    return folder


def check_output_dir(value: Any) -> Path:
    """The checks of an `output_dir` setting that leave nothing behind: set, not empty, no file in the
    way, and the folder (or its nearest existing parent) takes a new file. Returns it as an absolute
    path (a relative one is resolved against the working directory)."""
    if value is None or not str(value).strip():
        raise StoreError(f"output_dir={value!r} is invalid: it must name a folder (a relative path is resolved "
                         "against the working directory)")
    folder = Path(os.path.abspath(os.path.expanduser(str(value))))
    for parent in (folder, *folder.parents):
        try:
            exists = parent.exists()
        except OSError as err:  # e.g. a path component longer than the file system allows
            raise StoreError(f"output_dir={str(value)!r} is invalid: {describe_os_error(err, parent).split(': ', 1)[1]}") from None
        if exists:
            if not parent.is_dir():
                raise StoreError(f"output_dir={str(value)!r} is invalid: {str(parent)!r} is a file, not a folder")
            try:  # can we create files there? (mode bits do not tell for root: a read-only mount, chattr +i)
                fd, probe = tempfile.mkstemp(prefix=".boe-write-probe.", dir=parent)
                os.close(fd)
                os.unlink(probe)
            except OSError as err:
                raise StoreError(describe_os_error(err, parent)) from None
            break
    return folder


def _row_line(row: Mapping[str, Any]) -> bytes:
    return (json.dumps({k: _clean(v) for k, v in row.items()}, default=str) + "\n").encode()


def write_cell(results_dir: str | Path, cid: str, rows: Iterable[Mapping[str, Any]],
               identity: Mapping[str, Any] | None = None) -> Path:
    """Atomically write a cell's rows (all or nothing) followed by its completion record, to the cell's file when it
    has one (a damaged cell being recomputed keeps its name), else to a new file named by `cell_file_name`."""
    ensure_results_dir(results_dir)
    rows = list(rows)
    summary = next((r for r in rows if r.get("row_type") == "summary"), None)
    target = find_cell_file(results_dir, cid) or Path(results_dir) / ROWS_DIR / cell_file_name(cid, identity, summary)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{cid}.", suffix=".tmp", dir=target.parent)
        digest, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as fh:
            for row in rows:
                line = _row_line(row)
                digest.update(line)
                fh.write(line)
                n += 1
            record = {"row_type": COMPLETION, "cell_id": cid, "store_format": STORE_FORMAT, "n_rows": n,
                      "sha256": digest.hexdigest(), "identity": dict(identity) if identity is not None else None}
            fh.write((json.dumps(record, sort_keys=True, default=str) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as err:
        raise StoreError(describe_os_error(err, target)) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return target


# ----------------------------------------------------------------------------------------- verify
@dataclass
class CellCheck:
    """What verifying one cell file found."""

    path: Path
    ok: bool
    reason: str  #: why it does not verify ("" when it does)
    rows: list[dict] | None = None  #: the data rows (without the completion record) when ok
    record: dict | None = None  #: the completion record (None for a format-1 file)


def verify_file(path: str | Path) -> CellCheck:
    """Verify one cell file (see the module docstring); never raises for a damaged file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return CellCheck(path, False, "missing")
    except OSError as err:
        return CellCheck(path, False, f"unreadable ({err.strerror or err})")
    if not data.strip():
        return CellCheck(path, False, "empty")
    if not data.endswith(b"\n"):
        return CellCheck(path, False, "truncated mid-line (no final newline)")
    lines = data.split(b"\n")[:-1]
    rows = []
    for i, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return CellCheck(path, False, f"line {i} is not valid JSON")
        if not isinstance(row, dict):
            return CellCheck(path, False, f"line {i} is not a JSON object")
        rows.append(row)
    last = rows[-1]
    if last.get("row_type") == COMPLETION:
        body = rows[:-1]
        if last.get("n_rows") != len(body):
            return CellCheck(path, False, f"holds {len(body)} rows, its completion record says {last.get('n_rows')}")
        digest = hashlib.sha256(b"".join(line + b"\n" for line in lines[:-1])).hexdigest()
        if digest != last.get("sha256"):
            return CellCheck(path, False, "checksum mismatch (the rows were changed after they were written)")
        if last.get("cell_id") not in (None, cell_id_of(path)):
            return CellCheck(path, False, f"its completion record belongs to cell {last.get('cell_id')!r}")
        return CellCheck(path, True, "", body, last)
    # format 1 (before completion records): the summary row closes the file and counts the examples
    if last.get("row_type") != "summary" or not isinstance(last.get("n_examples"), int):
        return CellCheck(path, False, "no completion record and no closing summary row (truncated)")
    examples = sum(1 for r in rows[:-1] if r.get("row_type") == "example")
    if examples != last["n_examples"] or len(rows) != examples + 1:
        return CellCheck(path, False, f"holds {examples} example rows, its summary row says {last['n_examples']}")
    if any(r.get("cell_id") not in (None, cell_id_of(path)) for r in rows):
        return CellCheck(path, False, "holds rows of another cell")
    return CellCheck(path, True, "", rows, None)


def print_store_warnings(prog: str) -> None:
    """Show result-store warnings as one `<prog>: warning: ...` line each on stderr (command-line
    tools), instead of Python's two-line warning format."""
    import sys

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DamagedCellWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", DamagedCellWarning)


def _warn_damaged(check: CellCheck, action: str) -> None:
    warnings.warn(f"damaged result file {str(check.path)!r} ({check.reason}): {action}", DamagedCellWarning,
                  stacklevel=3)


def is_complete(results_dir: str | Path, cid: str) -> bool:
    """True only if the cell's file exists and verifies; a damaged file is reported (warning) and
    counts as not complete, so the caller recomputes it (the new file replaces it atomically)."""
    path = cell_path(results_dir, cid)
    if not path.exists():
        return False
    check = verify_file(path)
    if not check.ok:
        _warn_damaged(check, "recomputing this cell")
    return check.ok


def read_cell(results_dir: str | Path, cid: str) -> list[dict]:
    """The data rows of a complete cell (StoreError if it does not verify)."""
    check = verify_file(cell_path(results_dir, cid))
    if not check.ok:
        raise StoreError(f"result file {str(check.path)!r} is damaged ({check.reason}): rerun to recompute it")
    return check.rows or []


def iter_cells(results_dir: str | Path) -> Iterator[CellCheck]:
    """Every cell file under `results_dir` (recursively), verified; damaged ones are warned about."""
    for path in sorted(Path(results_dir).rglob(f"{ROWS_DIR}/*.jsonl")):
        check = verify_file(path)
        if not check.ok:
            _warn_damaged(check, "skipped (a rerun of its sweep recomputes it)")
        yield check


def read_rows(results_dir: str | Path) -> list[dict]:
    """All rows of every verified cell under `results_dir` (recursively: a sweep directory holds many
    run folders); damaged cells are skipped with a warning, completion records are not rows."""
    rows: list[dict] = []
    for check in iter_cells(results_dir):
        if check.ok:
            rows.extend(check.rows or [])
    return rows


# ----------------------------------------------------------------------------------------- locking
class CellLock:
    """An exclusive per-cell lock (`flock` on `rows/.<cid>.lock`), held while a cell is computed and
    written. The lock file is removed on release; a waiter that locked a removed file retries, so
    at most one process holds a cell's lock. A killed holder's lock is released by the kernel."""

    def __init__(self, results_dir: str | Path, cid: str):
        self.path = Path(results_dir) / ROWS_DIR / f".{cid}.lock"
        self.cid = cid
        self.fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise StoreError(describe_os_error(err, self.path)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                self._remove_stale_temp_files()
                return True
            os.close(fd)  # the holder removed the file after we opened it: lock the new one

    def _remove_stale_temp_files(self) -> None:
        """Temporary files of this cell left by a killed writer (we hold the lock, so none is live)."""
        for tmp in self.path.parent.glob(f".{self.cid}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> CellLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def claim_cell(results_dir: str | Path, cid: str, blocking: bool = True) -> tuple[str, CellLock | None]:
    """("complete", None) when the cell verifies, ("busy", None) when another process holds its lock
    (only with blocking=False), else ("claimed", lock): compute the cell, `write_cell`, then
    `lock.release()`. Completion is checked again under the lock, so a cell finished by another
    process while we waited is not computed twice."""
    if is_complete(results_dir, cid):
        return "complete", None
    lock = CellLock(results_dir, cid)
    if not lock.acquire(blocking=blocking):
        return "busy", None
    if cell_path(results_dir, cid).exists() and verify_file(cell_path(results_dir, cid)).ok:
        lock.release()
        return "complete", None
    return "claimed", lock


def wilson_interval(successes: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (robust for small n and p near 0 or 1)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
