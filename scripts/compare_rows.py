#!/usr/bin/env python
"""Compare the example rows of two result folders sample by sample: same response text and same
compute (NFE, forwards, backwards) for every (run, item) present in both. Used to show that a change
of the code reproduces committed sweeps token for token:

    boe-eval sweep=tiny_sudoku_nfe output_dir=/tmp/rerun sweep.only.sampler=boe
    python scripts/compare_rows.py results/tiny_sudoku_nfe /tmp/rerun

A run is identified by its sampler variant, every sampler parameter, the model, the task, the
layout and the seed (not by file names or provenance such as the git commit).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

COMPUTE = ("nfe", "forwards", "backwards")
LAYOUT = ("model", "task", "gen_length", "steps", "block_length", "temperature", "seed")


def run_key(row: dict) -> tuple:
    params = tuple(sorted((k, json.dumps(v)) for k, v in row.items() if k.startswith("sampler.")))
    return (row.get("variant") or row.get("sampler"), *(row.get(k) for k in LAYOUT), params)


def example_rows(folder: Path) -> dict[tuple, dict]:
    rows: dict[tuple, dict] = {}
    for path in sorted((folder / "rows").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("row_type") == "example":
                rows[(run_key(row), row.get("lm_eval_subtask"), row.get("doc_id"))] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path, help="result folder with the committed rows")
    parser.add_argument("candidate", type=Path, help="result folder with the rerun rows")
    args = parser.parse_args(argv)
    ref, new = example_rows(args.reference), example_rows(args.candidate)
    shared = sorted(set(ref) & set(new), key=str)
    if not shared:
        print(f"no (run, item) is in both {args.reference} and {args.candidate}", file=sys.stderr)
        return 2
    per_run: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for key in shared:
        label = f"{key[0][0]} steps={key[0][1 + LAYOUT.index('steps')]}"
        counts = per_run[label]
        counts[0] += 1
        counts[1] += ref[key].get("response") == new[key].get("response")
        counts[2] += all(ref[key].get(c) == new[key].get(c) for c in COMPUTE)
    print("| run | items | same response | same NFE/forwards/backwards |\n|---|---|---|---|")
    for label, (n, same, compute) in sorted(per_run.items()):
        print(f"| {label} | {n} | {same} | {compute} |")
    total = sum(c[0] for c in per_run.values())
    same = sum(c[1] for c in per_run.values())
    compute = sum(c[2] for c in per_run.values())
    print(f"\n{len(per_run)} runs, {total} items: {same} identical responses, {compute} identical compute")
    return 0 if same == total and compute == total else 1


if __name__ == "__main__":
    sys.exit(main())
