"""GSM8K scoring for the two protocols.

- Base protocol (lm-eval `gsm8k`, v3): the `strict-match` filter (first `#### N`) and the
  `flexible-extract` filter (last number) of lm-eval, each compared with lm-eval's `exact_match`
  (case-insensitive, ignoring `,`, `$`, a trailing `.` and everything up to `#### ` in the
  reference). lm-eval's own filter and metric functions are called, so the numbers are lm-eval's.
  They are computed in one `process_results` (two metrics) rather than two filter pipelines, which
  would give two result rows per example.
- d1 protocol (dllm-reasoning/d1, eval/parse_and_get_acc.py::parse_gsm_answers): the first
  `\\boxed{...}` (up to its first `}`) whose content reads as a number (else its first number),
  falling back to the last number inside `<answer>`; correct iff it equals the reference as a
  float. Kept as d1 wrote it, quirks included: `\\boxed{1,000}` reads as 1.
"""

from __future__ import annotations

import re

from lm_eval.api.metrics import exact_match_hf_evaluate
from lm_eval.filters.extraction import RegexFilter

from boe_eval.metrics.extraction import answer_tag

STRICT_PATTERN = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
IGNORED_FOR_MATCH = [",", "\\$", "(?s).*#### ", "\\.$"]

_strict = RegexFilter(regex_pattern=STRICT_PATTERN, group_select=0)
_flexible = RegexFilter(regex_pattern=FLEXIBLE_PATTERN, group_select=-1)
_BOXED_LAZY = re.compile(r"\\boxed{(.*?)}")
_NUMBER = re.compile(r"-?\d+\.?\d*")


def reference_number(answer: str) -> str:
    """The final answer of a GSM8K `answer` field (after `####`), thousands separators removed."""
    if "####" not in answer:
        raise ValueError(f"GSM8K answer has no '####' line: {answer[-80:]!r}")
    return answer.split("####")[-1].strip().replace(",", "")


def strict_answer(response: str) -> str:
    """lm-eval `strict-match`: the first `#### N` (or `[invalid]`)."""
    return _strict.apply([[response]], [{}])[0][0]


def flexible_answer(response: str) -> str:
    """lm-eval `flexible-extract`: the last number-like run (or `[invalid]`)."""
    return _flexible.apply([[response]], [{}])[0][0]


def _lm_eval_exact_match(prediction: str, reference: str) -> float:
    out = exact_match_hf_evaluate([prediction], [reference], regexes_to_ignore=IGNORED_FOR_MATCH, ignore_case=True)
    return float(out["exact_match"])


def score_base(response: str, answer: str) -> dict[str, float]:
    """`exact_match_strict` (`#### N`) and `exact_match_flexible` (last number), as lm-eval `gsm8k`."""
    return {
        "exact_match_strict": _lm_eval_exact_match(strict_answer(response), answer),
        "exact_match_flexible": _lm_eval_exact_match(flexible_answer(response), answer),
    }


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def d1_answer(response: str) -> float | None:
    """d1's GSM8K extraction (see the module docstring)."""
    for content in _BOXED_LAZY.findall(response):
        content = content.strip()
        if not content or re.fullmatch(r"\.+", content):
            continue
        value = _as_float(content)
        if value is None:
            numbers = _NUMBER.findall(content)
            value = _as_float(numbers[0]) if numbers else None
        if value is not None:
            return value
    tagged = answer_tag(response)
    if tagged:
        value = _as_float(tagged)
        if value is None:
            numbers = _NUMBER.findall(tagged)
            value = _as_float(numbers[-1]) if numbers else None
        return value
    return None


def score_d1(response: str, answer: str) -> dict[str, float]:
    """`boxed_answer_accuracy` (d1's rule) and `exact_match_flexible` (lm-eval's last number)."""
    predicted = d1_answer(response)
    return {
        "boxed_answer_accuracy": float(predicted is not None and predicted == float(reference_number(answer))),
        "exact_match_flexible": _lm_eval_exact_match(flexible_answer(response), answer),
    }


__all__ = [
    "d1_answer",
    "flexible_answer",
    "reference_number",
    "score_base",
    "score_d1",
    "strict_answer",
]
