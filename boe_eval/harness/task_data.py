"""Offline datasets for lm-eval task YAMLs.

lm-eval resolves `dataset_kwargs.data_files` against the working directory (which Hydra changes), so
the project's task YAMLs use `custom_dataset: !function utils.load` and their `utils.load` calls
`local_dataset(__file__, {...})`, which resolves paths next to the task's own files.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import datasets

from boe_eval.errors import ConfigError


def read_records(path: str | Path) -> list[dict]:
    """Records of a .jsonl, .jsonl.gz, .json (array) or .csv file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} does not exist: vendored task data is missing")
    if path.suffix == ".csv":
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        if path.name.endswith(".json"):
            return json.load(fh)
        return [json.loads(line) for line in fh if line.strip()]


def local_dataset(
    anchor: str | Path,
    splits: Mapping[str, str],
    transform: Callable[[list[dict]], list[dict]] | None = None,
) -> datasets.DatasetDict:
    """A DatasetDict from files given relative to `anchor` (pass the task's `__file__`)."""
    base = Path(anchor).resolve().parent
    out = {}
    for split, rel in splits.items():
        records = read_records(base / rel)
        if transform is not None:
            records = transform(records)
        out[split] = datasets.Dataset.from_list(records)
    return datasets.DatasetDict(out)
