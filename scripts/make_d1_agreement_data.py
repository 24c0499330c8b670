"""Write the d1 agreement cases (tests/data/d1_agreement/<task>.jsonl): LLaDA-like full-canvas
decodes for GSM8K, MATH500, Countdown and Sudoku, each with the verdict of d1's scoring code.

    python scripts/make_d1_agreement_data.py                     # (re)write the data files
    python scripts/make_d1_agreement_data.py --against /path/d1  # also run d1's own parser on them

The cases are written here by hand to cover what separates d1's code from a reading of its prompt
(a box after `</answer>`, no box, unclosed tags and boxes, `**` and `//`, several answers,
`\\boxed{1,000}`, whitespace, text after the end-of-text tokens...). The verdicts come from
`tests/d1_reference.py`, a step-by-step restatement of d1's code; `--against` imports d1's own
`eval/parse_and_get_acc.py` from a clone and checks that it gives the same verdict on every case.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "d1_agreement"
sys.path.insert(0, str(REPO / "tests"))

from d1_reference import VERDICTS  # noqa: E402

END = "<|eot_id|>" + "<|endoftext|>" * 4  # how a LLaDA canvas ends once the model has stopped


def d1(reasoning: str, answer: str, tail: str = END) -> str:
    """A decode in d1's format: `<reasoning>` is prefilled in the prompt, so the text starts inside it."""
    return f"\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>{tail}"


GSM_REFERENCE = "16 - 3 - 4 = <<16-3-4=9>>9 eggs are sold.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"
GSM_THOUSAND = "He pays 4 * 250 = <<4*250=1000>>1,000.\n#### 1,000"
GSM_NEGATIVE = "It falls from 7 to 7 - 10 = <<7-10=-3>>-3 degrees.\n#### -3"
WORK = "Janet's ducks lay 16 eggs. She uses 3 + 4 = 7, so 16 - 7 = 9 remain. 9 * 2 = 18."

GSM8K = [
    ("boxed in the answer", d1(WORK, "\\boxed{18}"), GSM_REFERENCE),
    ("box after </answer> (the tag holds another number)", d1(WORK, "16", "\nSo the final answer is \\boxed{18}." + END), GSM_REFERENCE),
    ("no box, plain number in the answer", d1(WORK, "18"), GSM_REFERENCE),
    ("no box, the last number of the answer is the result", d1(WORK, "She makes $18 every day."), GSM_REFERENCE),
    ("no box, the last number of the answer is not the result", d1(WORK, "18 dollars from 9 eggs"), GSM_REFERENCE),
    ("unclosed <answer> before the end-of-text tokens", f"\n{WORK}\n</reasoning>\n<answer>\n18{END}", GSM_REFERENCE),
    ("unclosed <answer> at the end of a full canvas", f"\n{WORK}\n</reasoning>\n<answer>\n18", GSM_REFERENCE),
    ("thousands separator inside the box", d1("4 * 250 = 1000", "\\boxed{1,000}"), GSM_THOUSAND),
    ("plain thousands in the box, separator in the reference", d1("4 * 250 = 1000", "\\boxed{1000}"), GSM_THOUSAND),
    ("two boxes, the first is wrong", d1(WORK + " First guess \\boxed{12}.", "\\boxed{18}"), GSM_REFERENCE),
    ("placeholder box then the answer", d1("Format: \\boxed{...}. " + WORK, "\\boxed{18}"), GSM_REFERENCE),
    ("dollar sign in the box", d1(WORK, "\\boxed{\\$18}"), GSM_REFERENCE),
    ("decimal zeros", d1(WORK, "\\boxed{18.00}"), GSM_REFERENCE),
    ("spaces inside the box", d1(WORK, "\\boxed{ 18 }"), GSM_REFERENCE),
    ("a fraction in the box reads to its first brace", d1(WORK, "\\boxed{\\frac{36}{2}}"), GSM_REFERENCE),
    ("negative reference (d1 reads no sign there)", d1("7 - 10 = -3", "\\boxed{-3}"), GSM_NEGATIVE),
    ("a box broken over two lines", d1(WORK, "\\boxed{18\n}"), GSM_REFERENCE),
    ("an equation in the box", d1(WORK, "\\boxed{x = 18}"), GSM_REFERENCE),
    ("a box in the reasoning beats the answer", d1("So far \\boxed{9} eggs.", "20"), GSM_REFERENCE),
    ("empty answer, no box", d1(WORK, ""), GSM_REFERENCE),
    ("empty box in the answer, the right box after the end-of-text tokens",
     d1(WORK, "\\boxed{}", "<|eot_id|><|endoftext|>\\boxed{18}<|endoftext|>"), GSM_REFERENCE),
    ("scientific notation", d1(WORK, "\\boxed{1.8e1}"), GSM_REFERENCE),
    ("underscore digits (Python float accepts them)", d1("4 * 250", "\\boxed{1_000}"), GSM_THOUSAND),
    ("wrong sign", d1(WORK, "\\boxed{-18}"), GSM_REFERENCE),
    ("a space after \\boxed", d1(WORK, "\\boxed {18}"), GSM_REFERENCE),
    ("the answer ends with a period", d1(WORK, "The answer is 18."), GSM_REFERENCE),
    ("no tags at all", WORK + " The answer is 18." + END, GSM_REFERENCE),
    ("a box without digits is skipped", d1(WORK, "\\boxed{eighteen} \\boxed{18}"), GSM_REFERENCE),
]

MATH500 = [
    ("boxed fraction", d1("Divide 14 by 3.", "\\boxed{\\frac{14}{3}}"), "\\frac{14}{3}"),
    ("dfrac", d1("Divide 14 by 3.", "\\boxed{\\dfrac{14}{3}}"), "\\frac{14}{3}"),
    ("a/b form", d1("Divide 14 by 3.", "\\boxed{14/3}"), "\\frac{14}{3}"),
    ("decimal instead of a fraction", d1("Divide 14 by 3.", "\\boxed{4.67}"), "\\frac{14}{3}"),
    ("no box: d1 compares the whole text", d1("Divide 14 by 3.", "\\frac{14}{3}"), "\\frac{14}{3}"),
    ("box after </answer> (the tag holds another answer)", d1("Add them.", "5", "\nThus \\boxed{10}." + END), "10"),
    ("unclosed box, closed answer tag earlier", "\nAdd them.\n</reasoning>\n<answer>10</answer>\nThen \\boxed{10" + END, "10"),
    ("unclosed box inside the answer", "\nAdd them.\n</reasoning>\n<answer>\n\\boxed{10\n</answer>" + END, "10"),
    ("boxed with a space", d1("Add them: $\\boxed 10$.", "10"), "10"),
    ("a '\\boxed ' earlier in the text wins over a later box", d1("We write \\boxed answers.", "\\boxed{10}"), "10"),
    ("fbox", d1("Add them.", "\\fbox{10}"), "10"),
    ("empty box, answer in the tag", d1("Add them.", "10", "\n\\boxed{}" + END), "10"),
    ("degrees", d1("Angle.", "\\boxed{90^\\circ}"), "90^\\circ"),
    ("degrees against a bare number", d1("Angle.", "\\boxed{90}"), "90^\\circ"),
    ("dollar sign", d1("Cost.", "\\boxed{\\$10}"), "10"),
    ("percent", d1("Rate.", "\\boxed{10\\%}"), "10"),
    ("short left-hand side", d1("Solve.", "\\boxed{x = 9}"), "9"),
    ("text answer", d1("Who?", "\\boxed{\\text{Evelyn}}"), "\\text{Evelyn}"),
    ("left/right and spaces", d1("Convert.", "\\boxed{(3, \\frac{\\pi}{2})}"), "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("sqrt without braces", d1("Root.", "\\boxed{3\\sqrt13}"), "3\\sqrt{13}"),
    ("frac without braces", d1("Half.", "\\boxed{\\frac12}"), "\\frac{1}{2}"),
    ("0.5 against a half", d1("Half.", "\\boxed{0.5}"), "\\frac{1}{2}"),
    ("leading dot", d1("Half.", "\\boxed{.5}"), "\\frac{1}{2}"),
    ("x/2 (not integers: raw comparison)", d1("Half of x.", "\\boxed{x/2}"), "\\frac{x}{2}"),
    ("units dropped", d1("Length.", "\\boxed{5 \\text{ cm}}"), "5"),
    ("two unit blocks (raw comparison)", d1("Length.", "\\boxed{5 \\text{ cm} \\text{ each}}"), "5"),
    ("nested braces", d1("Sine.", "\\boxed{\\frac{\\sqrt{3}}{2}}"), "\\frac{\\sqrt{3}}{2}"),
    ("several boxes, the last is right", d1("Try \\boxed{3}.", "\\boxed{10}"), "10"),
    ("several boxes, the last is wrong", d1("Got \\boxed{10}.", "\\boxed{3}"), "10"),
    ("a right box then an unclosed one at the end of the canvas", "\nSo \\boxed{10}.\n</reasoning>\n<answer>\n\\boxed{1", "10"),
    ("right box after the end-of-text tokens", d1("Add.", "\\boxed{7}", "<|eot_id|><|endoftext|>\\boxed{10}<|endoftext|>"), "10"),
    ("expression answer", d1("Simplify.", "\\boxed{p-q}"), "p - q"),
    ("whitespace and newlines in the box", d1("Count.", "\\boxed{\n 2220 \n}"), "2220"),
]

CD_NUMBERS, CD_TARGET = [30, 100, 93], 23
COUNTDOWN = [
    ("boxed expression", d1("93 + 30 = 123, 123 - 100 = 23.", "\\boxed{93 + 30 - 100}"), CD_NUMBERS, CD_TARGET),
    ("power (Python eval accepts **)", d1("2 cubed is 8, times 8.", "\\boxed{2**3 * 8}"), [2, 3, 8], 64),
    ("right-associative power", d1("2 to the 9th.", "\\boxed{2 ** 3 ** 2}"), [2, 3, 2], 512),
    ("floor division (Python eval accepts //)", d1("7 // 2 = 3, 3 * 3 = 9.", "\\boxed{(7 // 2) * 3}"), [7, 2, 3], 9),
    ("no box: d1 evaluates the whole text", d1("Try it.", "93 + 30 - 100"), CD_NUMBERS, CD_TARGET),
    ("no box: the first 'expression = number' of the text", d1("First, 93 + 30 - 100 = 23.", "done"), CD_NUMBERS, CD_TARGET),
    ("box after </answer> (the tag holds another expression)",
     d1("Search.", "100 - 93 + 30", "\nSo \\boxed{93 + 30 - 100}" + END), CD_NUMBERS, CD_TARGET),
    ("unclosed box inside the answer", "\nSearch.\n</reasoning>\n<answer>\n\\boxed{93 + 30 - 100\n</answer>" + END, CD_NUMBERS, CD_TARGET),
    ("unclosed box after a closed plain answer", "\nSearch.\n</reasoning>\n<answer>93 + 30 - 100</answer> \\boxed{93" + END, CD_NUMBERS, CD_TARGET),
    ("LaTeX times", d1("7 * 30.", "\\boxed{(100 - 93) \\times 30}"), CD_NUMBERS, 210),
    ("LaTeX div and cdot", d1("Split.", "\\boxed{8 \\div 4 \\cdot 2}"), [8, 4, 2], 4),
    ("the target written after '='", d1("Check.", "\\boxed{93 + 30 - 100 = 23}"), CD_NUMBERS, CD_TARGET),
    ("no spaces", d1("Check.", "\\boxed{93+30-100}"), CD_NUMBERS, CD_TARGET),
    ("newlines in the box", d1("Check.", "\\boxed{\n93 + 30 - 100\n}"), CD_NUMBERS, CD_TARGET),
    ("an extra number", d1("Check.", "\\boxed{93 + 30 - 100 + 0}"), CD_NUMBERS, CD_TARGET),
    ("a number missing", d1("Check.", "\\boxed{93 - 70}"), CD_NUMBERS, CD_TARGET),
    ("true division", d1("Halve twice.", "\\boxed{8 / 4 / 2}"), [8, 4, 2], 1),
    ("division by zero", d1("Divide.", "\\boxed{8 / (4 - 4)}"), [8, 4, 4], 0),
    ("fractional intermediate", d1("Scale.", "\\boxed{5 / 2 * 10}"), [5, 2, 10], 25),
    ("boxed with a space", d1("Check: $\\boxed 93 + 30 - 100$", "see above"), CD_NUMBERS, CD_TARGET),
    ("words in the box", d1("Check.", "\\boxed{93 + 30 - 100 \\text{ gives } 23}"), CD_NUMBERS, CD_TARGET),
    ("unicode minus", d1("Check.", "\\boxed{93 + 30 \u2212 100}"), CD_NUMBERS, CD_TARGET),
    ("right box after the end-of-text tokens",
     d1("Search.", "\\boxed{100 - 93 + 30}", "<|eot_id|><|endoftext|>\\boxed{93 + 30 - 100}<|endoftext|>"), CD_NUMBERS, CD_TARGET),
    ("brackets", d1("Check.", "\\boxed{(93 + 30) - 100}"), CD_NUMBERS, CD_TARGET),
    ("leading unary minus", d1("Check.", "\\boxed{-100 + 93 + 30}"), CD_NUMBERS, CD_TARGET),
    ("a decimal point splits a number", d1("Check.", "\\boxed{93 + 30 - 100.0}"), CD_NUMBERS, CD_TARGET),
    ("several boxes, the last wins", d1("Try \\boxed{93 + 30 - 100}.", "\\boxed{100 - 93 + 30}"), CD_NUMBERS, CD_TARGET),
    ("implicit call (eval raises)", d1("Check.", "\\boxed{(93)(30) - 100}"), CD_NUMBERS, CD_TARGET),
    ("no box, unclosed answer", f"\nSearch.\n</reasoning>\n<answer>\n93 + 30 - 100{END}", CD_NUMBERS, CD_TARGET),
]

PUZZLE, SOLUTION = "3102200002100320", "3142243142131324"
ROWS = "\n".join(SOLUTION[i : i + 4] for i in range(0, 16, 4))
WRONG = "3142243142133124"
SUDOKU = [
    ("the grid in the answer", d1("Fill row 1 first.", SOLUTION)),
    ("rows on separate lines", d1("Fill row 1 first.", ROWS)),
    ("a code block", d1("Fill row 1 first.", f"```\n{ROWS}\n```")),
    ("unclosed answer before the end-of-text tokens", f"\nFill.\n</reasoning>\n<answer>\n{SOLUTION}{END}"),
    ("unclosed answer, rows on lines, at the end of a full canvas", f"\nFill.\n</reasoning>\n<answer>\n{ROWS}"),
    ("unclosed answer, one line, at the end of a full canvas", f"\nFill.\n</reasoning>\n<answer>\n{SOLUTION}"),
    ("empty answer, the grid after it", f"\nFill.\n</reasoning>\n<answer>\n</answer>\n{SOLUTION}{END}"),
    ("a wrong grid in the answer, the right one in the reasoning", d1(f"Candidate {SOLUTION}.", WRONG)),
    ("too short", d1("Fill.", SOLUTION[:6])),
    ("too long", d1("Fill.", SOLUTION + "1234")),
    ("separators", d1("Fill.", " | ".join(SOLUTION[i : i + 4] for i in range(0, 16, 4)))),
    ("words before the grid", d1("Fill.", f"The solution is {SOLUTION}")),
    ("no tags, bare 16 digits", f"\nThe grid is {SOLUTION} and that is all.{END}"),
    ("17 digits in a row", f"\nThe grid is {SOLUTION}4 and that is all.{END}"),
    ("commas", d1("Fill.", ",".join(SOLUTION))),
    ("grid after the end-of-text tokens", d1("Fill.", "", f"<|eot_id|><|endoftext|>{SOLUTION}<|endoftext|>")),
    ("text after </answer> with an empty answer", f"\nFill.\n</reasoning>\n<answer></answer>\n{WRONG}\n{END}"),
    ("the givens only", d1("Fill.", PUZZLE)),
    ("unclosed answer, spaced rows, then words, at the end of a full canvas",
     "\nFill.\n</reasoning>\n<answer>\n" + " ".join(SOLUTION[i : i + 4] for i in range(0, 16, 4)) + "\nDone"),
]


def cases() -> dict[str, list[dict]]:
    return {
        "gsm8k": [{"id": f"gsm8k-{i:02d}", "note": n, "response": r, "answer": a} for i, (n, r, a) in enumerate(GSM8K)],
        "math500": [{"id": f"math500-{i:02d}", "note": n, "response": r, "answer": a} for i, (n, r, a) in enumerate(MATH500)],
        "countdown": [
            {"id": f"countdown-{i:02d}", "note": n, "response": r, "numbers": nums, "target": t}
            for i, (n, r, nums, t) in enumerate(COUNTDOWN)
        ],
        "sudoku": [
            {"id": f"sudoku-{i:02d}", "note": n, "response": r, "puzzle": PUZZLE, "solution": SOLUTION}
            for i, (n, r) in enumerate(SUDOKU)
        ],
    }


def d1_own_verdicts(d1_dir: Path, task: str, items: list[dict]) -> list[dict]:
    """d1's parse_and_get_acc.py on the cases (its tiktoken token count stubbed when absent)."""
    if "tiktoken" not in sys.modules:
        try:
            import tiktoken  # noqa: F401
        except ImportError:
            stub = types.ModuleType("tiktoken")
            stub.get_encoding = lambda name: types.SimpleNamespace(encode=lambda text: text.split())
            sys.modules["tiktoken"] = stub
    sys.path.insert(0, str(d1_dir / "eval"))
    import parse_and_get_acc as d1code
    from parsers import Parser

    def wrap(question, truth, text):
        return {"generations": [{"question": question, "ground_truth": truth, "generations": text}]}

    out = []
    for case in items:
        if task == "gsm8k":
            item = d1code.parse_gsm_answers(json_data=wrap("q", Parser.extract_answer_gsm8k(case["answer"]), case["response"]))[2][0]
            out.append({"extracted": item["extracted_answer"], "correct": item["is_correct"]})
        elif task == "math500":
            item = d1code.parse_math_answers(json_data=wrap("q", case["answer"], case["response"]))[2][0]
            out.append({"extracted": item["extracted_answer"], "correct": item["is_correct"]})
        elif task == "countdown":
            item = d1code.parse_countdown_answers(json_data=wrap("q", [case["numbers"], case["target"]], case["response"]))[2][0]
            out.append({"extracted": item["extracted_answer"], "correct": item["is_correct"]})
        else:
            question = f"Solve the following Sudoku puzzle: {case['puzzle']}\n"
            item = d1code.parse_sudoku_answers(json_data=wrap(question, case["solution"], case["response"]))[2][0]
            out.append({"extracted": item["extracted_answer"], "correct_cells": item["correct_cells"], "cell_accuracy": item["accuracy"]})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="a clone of github.com/dllm-reasoning/d1: compare with its parser")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    status = 0
    for task, items in cases().items():
        for case in items:
            case["d1"] = VERDICTS[task](case)
        with (OUT / f"{task}.jsonl").open("w") as fh:
            for case in items:
                fh.write(json.dumps(case, ensure_ascii=False) + "\n")
        line = f"{task:10s} {len(items)} cases written"
        if args.against:
            theirs = d1_own_verdicts(args.against, task, items)
            agree = sum(case["d1"] == other for case, other in zip(items, theirs))
            line += f", d1's own parser agrees on {agree}/{len(items)}"
            for case, other in zip(items, theirs):
                if case["d1"] != other:
                    status = 1
                    print(f"  {case['id']}: restatement {case['d1']} d1 {other}")
        print(line)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
