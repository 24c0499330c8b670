"""MATH500 scoring: answer extraction and comparison of the two protocols.

- d1 protocol, the whole decoded canvas scored two ways (see `boe_eval.metrics.extraction`):
  - `math_accuracy_d1code` = dllm-reasoning/d1 eval/parse_and_get_acc.py::parse_math_answers:
    the answer is d1's `remove_boxed(last_boxed_only_string(text))` (with no `\\boxed` at all that
    is the whole text; with a `\\boxed{` that never closes it fails); only when that fails or is empty
    does the first closed `<answer>...</answer>` count. It is compared with the MATH string
    normaliser `is_equiv` (Hendrycks et al. 2021; d1's parser_helper.py holds the same code as
    lm-eval's `hendrycks_math` task, whose function is called here).
  - `math_verify_accuracy_semantic`: the last balanced `\\boxed{}` of the answer region, else its
    `<answer>` content (closed or not), compared with math-verify (mathematical equivalence).
- Minerva protocol (Lewkowycz et al. 2022, lm-eval `minerva_math`): the text between
  "Final Answer: The final answer is" and ". I hope it is correct."; lm-eval then compares
  normalised strings with sympy, here math-verify decides. `response_math_verify` is lm-eval's
  second metric: math-verify's own extraction over the whole response.
"""

from __future__ import annotations

import re

from boe_eval.metrics.extraction import NotBoxed, answer_region, answer_tag, d1_answer_tag, d1_boxed, last_boxed
from boe_eval.metrics.math_equivalence import answers_equal, response_matches

_MINERVA_FINAL = re.compile(r"Final Answer: The final answer is(.*?)\. I hope it is correct\.")


def hendrycks_is_equiv(prediction: str, gold: str) -> bool:
    """The MATH benchmark's `is_equiv` (string normalisation, then equality), as lm-eval ships it."""
    from lm_eval.tasks.hendrycks_math.utils import is_equiv

    return bool(is_equiv(prediction, gold))


def d1code_answer(response: str) -> str | None:
    """d1's MATH500 answer, exactly as its code reads the whole decoded text (module docstring)."""
    try:
        answer: str | None = d1_boxed(response)
    except NotBoxed:
        answer = None
    if not answer:
        tagged = d1_answer_tag(response)
        if tagged is not None:
            answer = tagged
    return answer


def semantic_answer(response: str) -> str | None:
    """The answer the d1 format asks for: last balanced `\\boxed{}` of the answer region, else its
    `<answer>` content."""
    region = answer_region(response)
    return last_boxed(region) or answer_tag(region)


def minerva_answer(response: str) -> str | None:
    """Minerva's extraction (the response gets the closing sentence appended, as in lm-eval, so a
    generation cut right after "The final answer is $x$." still counts); `$` delimiters removed."""
    match = _MINERVA_FINAL.search(response + " I hope it is correct.")
    if match is None:
        return None
    answer = match.group(1).strip()
    if len(answer) >= 2 and answer.startswith("$") and answer.endswith("$"):
        answer = answer[1:-1].strip()
    return answer or None


def score_d1(response: str, gold: str) -> dict[str, float]:
    """d1 protocol: `math_accuracy_d1code` and `math_verify_accuracy_semantic`."""
    d1code = d1code_answer(response)
    return {
        "math_accuracy_d1code": float(d1code is not None and hendrycks_is_equiv(d1code, gold)),
        "math_verify_accuracy_semantic": float(answers_equal(gold, semantic_answer(response))),
    }


def score_minerva(response: str, gold: str) -> dict[str, float]:
    """Base protocol: `final_answer_math_verify` (Minerva extraction) and `response_math_verify`
    (math-verify's extraction from the whole response)."""
    return {
        "final_answer_math_verify": float(answers_equal(gold, minerva_answer(response))),
        "response_math_verify": float(response_matches(gold, response)),
    }


__all__ = [
    "d1code_answer",
    "hendrycks_is_equiv",
    "minerva_answer",
    "score_d1",
    "score_minerva",
    "semantic_answer",
]
