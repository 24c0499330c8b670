"""GSM8K scoring for the two protocols.

- Base protocol (lm-eval `gsm8k`, v3): the `strict-match` filter (first `#### N`) and the
  `flexible-extract` filter (last number) of lm-eval, each compared with lm-eval's `exact_match`
  (case-insensitive, ignoring `,`, `$`, a trailing `.` and everything up to `#### ` in the
  reference). lm-eval's own filter and metric functions are called, so the numbers are lm-eval's.
  They are computed in one `process_results` (two metrics) rather than two filter pipelines, which
  would give two result rows per example.
- d1 protocol, the whole decoded canvas scored two ways (see `boe_eval.metrics.extraction`):
  - `boxed_answer_accuracy_d1code` = dllm-reasoning/d1 eval/parse_and_get_acc.py::parse_gsm_answers:
    the first `\\boxed{...}` (up to its first `}`, on one line) whose stripped content is neither
    empty nor dots and reads as a float (else its first number); failing every box, the first
    *closed* `<answer>...</answer>` read as a float (else its last number); correct iff equal, as a
    float, to the reference read by d1's `Parser.extract_answer_gsm8k` (`#### N`). Quirks kept:
    `\\boxed{1,000}` reads as 1; a box after `</answer>` counts; an unclosed `<answer>` is no answer.
  - `boxed_answer_accuracy_semantic`: the same reading of the boxes and the tag, on the answer
    region only (up to `</answer>` or the end of the text), where an unclosed tag counts.
  - `exact_match_flexible`: lm-eval's last-number filter on the whole response.
"""

from __future__ import annotations

import re

from lm_eval.api.metrics import exact_match_hf_evaluate
from lm_eval.filters.extraction import RegexFilter

from boe_eval.metrics.extraction import answer_region, answer_tag, d1_answer_tag

STRICT_PATTERN = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
IGNORED_FOR_MATCH = [",", "\\$", "(?s).*#### ", "\\.$"]

_strict = RegexFilter(regex_pattern=STRICT_PATTERN, group_select=0)
_flexible = RegexFilter(regex_pattern=FLEXIBLE_PATTERN, group_select=-1)
_BOXED_LAZY = re.compile(r"\\boxed{(.*?)}")
_NUMBER = re.compile(r"-?\d+\.?\d*")
_D1_REFERENCE = re.compile(r"####\s*\$?([\d,]+(?:\.\d+)?)")


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


def d1_reference(answer: str) -> float | None:
    """d1's reading of the reference (`Parser.extract_answer_gsm8k`): the first `#### N` (optional `$`,
    thousands commas dropped) as a float; None when the field has none."""
    match = _D1_REFERENCE.search(answer)
    return float(match.group(1).replace(",", "")) if match else None


def _number_in(text: str, which: int) -> float | None:
    """`text` as a float, else its first (`which=0`) or last (`which=-1`) number; None without one."""
    try:
        return float(text)
    except ValueError:
        numbers = _NUMBER.findall(text)
        return float(numbers[which]) if numbers else None


def _boxed_number(text: str) -> float | None:
    """The first `\\boxed{...}` (lazy, one line) holding a number: d1's loop over the boxes."""
    for content in _BOXED_LAZY.findall(text):
        content = content.strip()
        if not content or re.fullmatch(r"\.+", content):  # empty, "..." and other dots are skipped
            continue
        value = _number_in(content, 0)
        if value is not None:
            return value
    return None


def d1code_answer(response: str) -> float | None:
    """d1's GSM8K answer, exactly as its code reads the whole decoded text (module docstring)."""
    value = _boxed_number(response)
    if value is not None:
        return value
    tagged = d1_answer_tag(response)
    return _number_in(tagged, -1) if tagged else None


def semantic_answer(response: str) -> float | None:
    """The answer the d1 format asks for: a boxed number of the answer region, else the number in
    its `<answer>` tag (closed or not)."""
    region = answer_region(response)
    value = _boxed_number(region)
    if value is not None:
        return value
    tagged = answer_tag(region)
    return _number_in(tagged, -1) if tagged else None


def score_d1(response: str, answer: str) -> dict[str, float]:
    """`boxed_answer_accuracy_d1code`, `boxed_answer_accuracy_semantic` and `exact_match_flexible`."""
    gold = d1_reference(answer)
    d1code, semantic = d1code_answer(response), semantic_answer(response)
    return {
        "boxed_answer_accuracy_d1code": float(gold is not None and d1code is not None and d1code == gold),
        "boxed_answer_accuracy_semantic": float(semantic is not None and semantic == float(reference_number(answer))),
        "exact_match_flexible": _lm_eval_exact_match(flexible_answer(response), answer),
    }


__all__ = [
    "d1_reference",
    "d1code_answer",
    "flexible_answer",
    "reference_number",
    "score_base",
    "score_d1",
    "semantic_answer",
    "strict_answer",
]
