"""Reference verdicts for the d1 agreement tests: a step-by-step restatement of d1's scoring code
(github.com/dllm-reasoning/d1 @ 837888f: eval/parse_and_get_acc.py parse_gsm_answers,
parse_math_answers, parse_countdown_answers, parse_sudoku_answers; eval/parser_helper.py
last_boxed_only_string, remove_boxed, strip_string, is_equiv; eval/parsers.py
Parser.extract_answer_gsm8k), one item at a time.

It is written for the tests only and shares no code with `boe_eval.metrics`: the exception flow of
d1's helpers (an unclosed box raises, a failed assertion in the MATH normaliser falls back to raw
string equality) is reproduced with explicit exceptions here, in the order d1's code takes.
`scripts/make_d1_agreement_data.py` used it to write the verdicts in tests/data/d1_agreement/, and
it was checked once against d1's own functions on those cases (the script's `--against` option).
"""

from __future__ import annotations

import re
from typing import Any


# ------------------------------------------------------------------------ parser_helper.py
def last_boxed_only_string(text: str) -> str | None:
    """The last box with its wrapper, the whole text without any box, None if its braces never close."""
    last = text.rfind("\\boxed")
    if "\\boxed " in text:
        tail = text.split("\\boxed ")[-1]
        return "\\boxed " + tail.split("$")[0]
    if last < 0:
        last = text.rfind("\\fbox")
        if last < 0:
            return text
    open_count = 0
    i = last
    while i < len(text):
        if text[i] == "{":
            open_count += 1
        if text[i] == "}":
            open_count -= 1
            if open_count == 0:
                return text[last : i + 1]
        i += 1
    return None


def remove_boxed(span: str | None) -> str:
    """Strip a `\\boxed ` / `\\boxed{...}` wrapper; anything else is returned unchanged. None raises
    TypeError (d1 tests `"\\boxed " in None`)."""
    if span is None:
        raise TypeError("argument of type 'NoneType' is not iterable")
    if "\\boxed " in span:
        if not span.startswith("\\boxed "):
            raise AssertionError
        return span[len("\\boxed ") :]
    if len(span) > 0 and span.startswith("\\boxed{") and span[-1] == "}":
        return span[len("\\boxed{") : -1]
    return span


class _Fallback(Exception):
    """Raised where d1's normaliser raises: is_equiv then compares the raw strings."""


def _fix_fracs(s: str) -> str:
    pieces = s.split("\\frac")
    out = pieces[0]
    for piece in pieces[1:]:
        out += "\\frac"
        if piece == "":
            raise _Fallback  # piece[0] raises IndexError in d1
        if piece[0] == "{":
            out += piece
            continue
        if len(piece) < 2:
            return s  # d1 returns the string as it was before this step
        a, b, rest = piece[0], piece[1], piece[2:]
        out += "{" + a + "}{" + b + "}" + rest if b != "{" else "{" + a + "}" + b + rest
    return out


def _fix_a_slash_b(s: str) -> str:
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        raise _Fallback from None  # d1 catches only AssertionError here
    if s != f"{a}/{b}":
        return s
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _remove_right_units(s: str) -> str:
    if "\\text{ " not in s:
        return s
    parts = s.split("\\text{ ")
    if len(parts) != 2:
        raise _Fallback
    return parts[0]


def _fix_sqrt(s: str) -> str:
    if "\\sqrt" not in s:
        return s
    pieces = s.split("\\sqrt")
    out = pieces[0]
    for piece in pieces[1:]:
        if piece == "":
            raise _Fallback
        out += "\\sqrt" + piece if piece[0] == "{" else "\\sqrt{" + piece[0] + "}" + piece[1:]
    return out


def strip_string(s: str) -> str:
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", "")):
        s = s.replace(old, new)
    s = _remove_right_units(s)
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s == "":
        return s
    if s[0] == ".":
        s = "0" + s
    halves = s.split("=")
    if len(halves) == 2 and len(halves[0]) <= 2:
        s = halves[1]
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def is_equiv(a: str | None, b: str | None) -> bool:
    if a is None and b is None:
        return True
    if a is None or b is None:
        return False
    try:
        return strip_string(a) == strip_string(b)
    except _Fallback:
        return a == b


# --------------------------------------------------------------------------------- GSM8K
def gsm8k_ground_truth(answer_field: str) -> float | None:
    """parsers.py Parser.extract_answer_gsm8k."""
    found = re.search(r"####\s*\$?([\d,]+(?:\.\d+)?)", answer_field)
    return float(found.group(1).replace(",", "")) if found else None


def gsm8k_verdict(text: str, answer_field: str) -> dict[str, Any]:
    parsed = None
    for inside in re.findall(r"\\boxed{(.*?)}", text):
        inside = inside.strip()
        if not inside or inside == "..." or re.match(r"^\.+$", inside):
            continue
        try:
            parsed = float(inside)
            break
        except ValueError:
            found = re.findall(r"-?\d+\.?\d*", inside)
            if found:
                parsed = float(found[0])
                break
    if parsed is None:
        tag = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
        if tag and tag.group(1).strip():
            inside = tag.group(1).strip()
            try:
                parsed = float(inside)
            except ValueError:
                found = re.findall(r"-?\d+\.?\d*", inside)
                if found:
                    parsed = float(found[-1])
    truth = gsm8k_ground_truth(answer_field)
    return {"extracted": parsed, "correct": parsed is not None and parsed == truth}


# ------------------------------------------------------------------------------- MATH500
def math500_verdict(text: str, gold: str) -> dict[str, Any]:
    try:
        parsed = remove_boxed(last_boxed_only_string(text))
    except Exception:  # noqa: BLE001  (d1: bare except)
        parsed = None
    if not parsed:
        tag = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
        if tag:
            parsed = tag.group(1).strip()
    return {"extracted": parsed, "correct": parsed is not None and is_equiv(parsed, gold)}


# ----------------------------------------------------------------------------- Countdown
def _python_eval(expression: str) -> Any:
    if not re.match(r"^[\d+\-*/().\s]+$", expression):
        return float("inf")
    try:
        return eval(expression.strip(), {"__builtins__": None}, {})  # noqa: S307  (the test cases are ours)
    except Exception:  # noqa: BLE001
        return float("inf")


def countdown_verdict(text: str, numbers: list[int], target: int) -> dict[str, Any]:
    try:
        equation = remove_boxed(last_boxed_only_string(text))
    except Exception:  # noqa: BLE001
        tag = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
        equation = tag.group(1).strip() if tag else text
    equation = equation.replace("\\div", "/").replace("\\times", "*").replace("\\cdot", "*")
    lhs = re.search(r"([0-9+\-*/() ]+)=[0-9. ]+", equation)
    if lhs:
        equation = lhs.group(1).strip()
    valid = sorted(int(n) for n in re.findall(r"\d+", equation)) == sorted(numbers)
    correct = bool(valid and abs(_python_eval(equation) - target) < 1e-5)
    return {"extracted": equation, "correct": correct}


# -------------------------------------------------------------------------------- Sudoku
_SUDOKU_CASCADE = (
    r"<answer>.*?```\s*([\d\s]+)```",
    r"<answer>(.*?)(?:<\|eot_id\|>|<\|endoftext\|>|</answer>)",
    r"</answer>\s*(.*?)(?:<\|eot_id\|>|<\|endoftext\|>|$)",
    r".*?(\d{16})\s*</answer>",
    r"\b(\d{16})\b",
)


def sudoku_verdict(text: str, puzzle: str, solution: str) -> dict[str, Any]:
    found = ""
    for pattern in _SUDOKU_CASCADE:
        hit = re.search(pattern, text, re.DOTALL)
        if hit and hit.group(1).strip():
            found = hit.group(1).strip()
            break
    found = re.sub(r"\s", "", found)
    empties = [i for i, ch in enumerate(puzzle) if ch == "0"]
    if found:
        found = found.ljust(16, "0")[:16]
        right = sum(found[i] == solution[i] for i in empties)
    else:
        right = 0
    return {"extracted": found, "correct_cells": right, "cell_accuracy": right / len(empties) if empties else 0.0}


VERDICTS = {
    "gsm8k": lambda case: gsm8k_verdict(case["response"], case["answer"]),
    "math500": lambda case: math500_verdict(case["response"], case["answer"]),
    "countdown": lambda case: countdown_verdict(case["response"], case["numbers"], case["target"]),
    "sudoku": lambda case: sudoku_verdict(case["response"], case["puzzle"], case["solution"]),
}
