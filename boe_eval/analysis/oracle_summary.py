"""Summary of an oracle sweep (issue 14): per sampler and budget, the score, measured NFE, the oracle-only metrics,
the agreement with confidence (decision diagnostics) and a paired test against confidence at the same budget on
the same items (`boe_eval.analysis.paired`); EB-Sampler's points are paired with confidence at the budget nearest
their measured NFE.

    python -m boe_eval.analysis.oracle_summary results/oracle_hmm_two_modes_nfe   # writes oracle_summary.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from boe_eval.analysis.paired import paired_test
from boe_eval.store import read_rows

ALPHA = 0.05
EXTRA_METRICS = ("metric.valid", "metric.log_prob", "metric.mode_gap", "metric.mode_match")


def _fmt(value, digits: int = 1, scale: float = 1.0) -> str:
    return "–" if value is None or pd.isna(value) else f"{scale * float(value):.{digits}f}"


def oracle_table(results_dir: str | Path) -> tuple[pd.DataFrame, str]:
    """One line per (variant, budget or gamma) with its paired test vs confidence; and the verdict lines."""
    rows = pd.DataFrame(read_rows(results_dir))
    examples = rows[rows["row_type"] == "example"]
    summaries = rows[rows["row_type"] == "summary"].copy()
    summaries["budget"] = pd.to_numeric(summaries.get("budget"), errors="coerce")
    summaries = summaries.sort_values(["sweep.order", "budget", "sweep.knob_value"], na_position="last")
    scores = {cid: dict(zip(part["doc_id"], part["score"])) for cid, part in examples.groupby("cell_id")}
    baseline = summaries[summaries["variant"] == "confidence"].set_index("budget")
    lines = []
    for _, s in summaries.iterrows():
        budget = s["budget"]
        if pd.isna(budget):  # adaptive (EB): the confidence budget nearest its measured NFE
            budget = min(baseline.index, key=lambda b: abs(b - s["nfe"]))
        base = baseline.loc[budget]
        test = paired_test(scores[s["cell_id"]], scores[base["cell_id"]])
        knob = s.get("sweep.knob")
        lines.append({
            "sampler": s["variant"],
            "budget": "γ=" + _fmt(s["sweep.knob_value"], 2) if knob == "gamma" else _fmt(s["budget"], 0),
            "steps": int(s["steps"]) if knob != "gamma" else "–",
            "NFE": _fmt(s["nfe"]),
            "score": _fmt(s["score"], 3),
            **{m.split(".", 1)[1]: _fmt(s.get(m), 3) for m in EXTRA_METRICS if m in s and pd.notna(s.get(m))},
            "agree w/ conf %": _fmt(s.get("agreement_with_confidence"), 1, 100),
            "degenerate %": _fmt(s.get("degenerate_fraction"), 1, 100),
            "remasked": _fmt(s.get("remasked"), 0),
            "vs confidence @": _fmt(budget, 0),
            "Δ score": _fmt(test["difference"], 3),
            "wins/losses": f"{test['wins']}/{test['losses']}",
            "p (paired)": "–" if s["variant"] == "confidence" else f"{test['p_value']:.2g}",
            "_p": test["p_value"],
            "_diff": test["difference"],
            "_test": test["test"],
        })
    table = pd.DataFrame(lines)
    verdicts = []
    for variant, part in table.groupby("sampler", sort=False):
        if variant == "confidence":
            continue
        better = part[(part["_p"] < ALPHA) & (part["_diff"] > 0)]
        worse = part[(part["_p"] < ALPHA) & (part["_diff"] < 0)]

        def where(frame):
            return ", ".join(f"{b} ({d:+.3f}, p={p:.2g})" for b, d, p in zip(frame["budget"], frame["_diff"], frame["_p"]))

        text = f"- **{variant}** vs confidence ({part['_test'].iloc[0]}, same items, p < {ALPHA}): "
        if better.empty and worse.empty:
            text += "no significant difference at any budget"
        else:
            text += "; ".join(x for x in (f"better at {where(better)}" if not better.empty else "",
                                           f"worse at {where(worse)}" if not worse.empty else "") if x)
            rest = len(part) - len(better) - len(worse)
            if rest:
                text += f"; no significant difference at the other {rest}"
        agree = part["agree w/ conf %"].tolist()
        text += f". Agreement with confidence: {', '.join(agree)} % of decision steps."
        verdicts.append(text)
    return table, "\n".join(verdicts)


def write_summary(results_dir: str | Path) -> Path:
    table, verdicts = oracle_table(results_dir)
    shown = table[[c for c in table.columns if not c.startswith("_")]]
    text = (
        f"# Oracle sweep summary: {Path(results_dir).name}\n\n"
        "score = the task's primary metric; budgets are NFE (paper accounting); EB-Sampler runs at its gamma and is "
        "compared with confidence at the budget nearest its measured NFE. agree w/ conf = share of decision steps "
        "whose commit set equals confidence's top-b_t from the same logits; degenerate = share of decision steps where "
        "a known cause makes it equal by construction (BoE: b_t >= |C_t|; LookUM: b_t >= pool). Paired test against "
        "confidence at the same budget on the same items (McNemar exact for binary scores, Wilcoxon signed-rank "
        "otherwise); wins/losses = items where the sampler scores higher/lower.\n\n"
        + shown.to_markdown(index=False)
        + "\n\n## Each sampler against confidence\n\n"
        + verdicts
        + "\n"
    )
    path = Path(results_dir) / "oracle_summary.md"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir")
    args = parser.parse_args(argv)
    path = write_summary(args.results_dir)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
