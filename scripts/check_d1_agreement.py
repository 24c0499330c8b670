"""Score d1's released generations with d1's own parser and with this project's `*_d1code` metrics,
and count the items on which the verdicts agree.

    python scripts/check_d1_agreement.py /path/to/d1        # a clone of github.com/dllm-reasoning/d1

d1's `eval/eval_baselines/*_generations.json` hold LLaDA-8B-Instruct's full decoded canvases (special
tokens included) for GSM8K, MATH500, Countdown and Sudoku at gen 128/256/512. d1's
`eval/parse_and_get_acc.py` is imported from the clone (its `tiktoken` token count is replaced by a
stub when tiktoken is absent: it does not affect the verdicts). The project's side gets each item
the way the lm-eval tasks do: the GSM8K/MATH500 reference from the vendored data (matched by
question), the Countdown numbers and target, the Sudoku puzzle and solution.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import types
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _import_d1(d1_dir: Path):
    try:
        import tiktoken  # noqa: F401
    except ImportError:  # only used for d1's token count, not for the verdicts
        stub = types.ModuleType("tiktoken")
        stub.get_encoding = lambda name: types.SimpleNamespace(encode=lambda text: text.split())
        sys.modules["tiktoken"] = stub
    sys.path.insert(0, str(d1_dir / "eval"))
    import parse_and_get_acc

    return parse_and_get_acc


def _records(path: Path) -> list[dict]:
    with path.open() as fh:
        return [json.loads(line) for line in fh]


def _semantic(task: str, item: dict, gsm_answers: dict, math_answers: dict) -> float:
    """The project's `*_semantic` reading of one released generation."""
    from boe_eval.metrics import countdown, gsm8k, math500, sudoku

    text = item["generations"]
    if task == "gsm8k":
        return gsm8k.score_d1(text, gsm_answers[item["question"]])["boxed_answer_accuracy_semantic"]
    if task == "math500":
        return math500.score_d1(text, math_answers[item["question"]])["math_verify_accuracy_semantic"]
    if task == "countdown":
        return float(countdown.is_correct(countdown.semantic_expression(text), *item["ground_truth"]))
    puzzle = re.search(r"Sudoku puzzle: ([0-9]{16})", item["question"]).group(1)
    return sudoku.score(text, puzzle, item["ground_truth"])["cell_accuracy_semantic"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("d1_dir", type=Path, help="a clone of github.com/dllm-reasoning/d1")
    args = parser.parse_args()
    if not (args.d1_dir / "eval" / "parse_and_get_acc.py").is_file():
        print(f"d1_dir={str(args.d1_dir)!r} is invalid: it must hold eval/parse_and_get_acc.py", file=sys.stderr)
        return 2
    d1 = _import_d1(args.d1_dir)
    from boe_eval.metrics import countdown, gsm8k, math500, sudoku

    gsm_answers = {r["question"]: r["answer"] for r in _records(REPO / "tasks/gsm8k/data/test.jsonl")}
    math_answers = {r["problem"]: r["answer"] for r in _records(REPO / "tasks/math500/data/test.jsonl")}
    tally: Counter = Counter()
    disagreements: list[str] = []
    for path in sorted(glob.glob(str(args.d1_dir / "eval" / "eval_baselines" / "*_generations.json"))):
        name = os.path.basename(path)
        task = name.split("_")[0]
        with open(path) as fh:
            data = json.load(fh)
        items = data["generations"]
        if task == "gsm8k":
            _, _, parsed, _ = d1.parse_gsm_answers(json_data=data)
            ours = [gsm8k.score_d1(it["generations"], gsm_answers[it["question"]])["boxed_answer_accuracy_d1code"] == 1.0 for it in items]
            theirs = [p["is_correct"] for p in parsed]
        elif task == "math500":
            _, _, parsed, _ = d1.parse_math_answers(json_data=data)
            ours = [math500.score_d1(it["generations"], math_answers[it["question"]])["math_accuracy_d1code"] == 1.0 for it in items]
            theirs = [p["is_correct"] for p in parsed]
        elif task == "countdown":
            _, _, parsed, _ = d1.parse_countdown_answers(json_data=data)
            ours = [
                countdown.d1code_is_correct(countdown.d1code_expression(it["generations"]), it["ground_truth"][0], it["ground_truth"][1])
                for it in items
            ]
            theirs = [p["is_correct"] for p in parsed]
        elif task == "sudoku":
            _, _, parsed, _ = d1.parse_sudoku_answers(json_data=data)
            ours, theirs = [], []
            for it, p in zip(items, parsed):
                puzzle = re.search(r"Sudoku puzzle: ([0-9]{16})", it["question"]).group(1)
                ours.append(sudoku.score(it["generations"], puzzle, it["ground_truth"])["cell_accuracy_d1code"])
                theirs.append(p["accuracy"])
        else:
            continue
        setup = name.rsplit("_", 2)[0]
        tally[(setup, "n")] += len(ours)
        tally[(setup, "score")] += sum(float(a) for a in ours)
        tally[(setup, "semantic")] += sum(_semantic(task, it, gsm_answers, math_answers) for it in items)
        for i, (a, b) in enumerate(zip(ours, theirs)):
            tally[(task, "items")] += 1
            tally[(task, "agree")] += int(a == b)
            if a != b:
                disagreements.append(f"{name} #{i}: project {a} d1 {b}")
    for task in ("gsm8k", "math500", "countdown", "sudoku"):
        print(f"{task:10s} agree {tally[(task, 'agree')]}/{tally[(task, 'items')]}")
    print("score per setup: project d1code (d1's parse_and_get_acc.py prints the same) | project semantic")
    for setup in sorted({key[0] for key in tally if key[1] == "n"}):
        n = tally[(setup, "n")]
        print(f"  {setup:28s} {100 * tally[(setup, 'score')] / n:6.2f} | {100 * tally[(setup, 'semantic')] / n:6.2f}  ({n} items)")
    for line in disagreements[:20]:
        print("  differs:", line)
    return 0 if not disagreements else 1


if __name__ == "__main__":
    raise SystemExit(main())
