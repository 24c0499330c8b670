#!/usr/bin/env python
"""Paired tests of every run in a result folder against a chosen baseline run, on the same items (exact McNemar for
binary scores, Wilcoxon signed-rank otherwise: `boe_eval.analysis.paired`). Use it to ask whether a method beats
its own control, not only confidence:

    python scripts/paired_table.py results/tiny_sudoku_controls boe_rho050
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from boe_eval.analysis.paired import paired_test
from boe_eval.store import read_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir")
    parser.add_argument("baseline", help="the variant (run label) every other run is compared with")
    args = parser.parse_args(argv)
    scores: dict[tuple, dict] = defaultdict(dict)
    for row in read_rows(args.results_dir):
        if row.get("row_type") == "example":
            scores[(row.get("variant") or row["sampler"], row.get("budget"))][row["doc_id"]] = row["score"]
    baselines = {budget: s for (variant, budget), s in scores.items() if variant == args.baseline}
    if not baselines:
        print(f"paired_table: error: no run labelled {args.baseline!r} in {args.results_dir}", file=sys.stderr)
        return 2
    print(f"| run | budget | n | score | {args.baseline} | difference | wins/losses | test | p |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (variant, budget), s in sorted(scores.items(), key=lambda kv: (str(kv[0][1]), kv[0][0])):
        if variant == args.baseline or budget not in baselines:
            continue
        t = paired_test(s, baselines[budget])
        print(f"| {variant} | {budget} | {t['n']} | {t['mean']:.3f} | {t['baseline_mean']:.3f} | {t['difference']:+.3f} "
              f"| {t['wins']}/{t['losses']} | {t['test']} | {t['p_value']:.2g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
