"""MATH500 scoring: answer extraction of the two protocols, equivalence by math-verify.

- d1 protocol (dllm-reasoning/d1, eval/parse_and_get_acc.py::parse_math_answers): the last
  `\\boxed{}` of the response, else the content of `<answer>`; d1 then compares with the MATH
  string normaliser `is_equiv`, here math-verify decides.
- Minerva protocol (Lewkowycz et al. 2022, lm-eval `minerva_math`): the text between
  "Final Answer: The final answer is" and ". I hope it is correct."; lm-eval then compares
  normalised strings with sympy, here math-verify decides. `response_math_verify` is lm-eval's
  second metric: math-verify's own extraction over the whole response.
"""

from __future__ import annotations

import re

from boe_eval.metrics.extraction import answer_tag, last_boxed
from boe_eval.metrics.math_equivalence import answers_equal, response_matches

_MINERVA_FINAL = re.compile(r"Final Answer: The final answer is(.*?)\. I hope it is correct\.")


def d1_answer(response: str) -> str | None:
    """d1's MATH500 extraction: last `\\boxed{}`, else the `<answer>` content."""
    return last_boxed(response) or answer_tag(response)


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
    """d1 protocol: `math_verify_accuracy` of the d1-extracted answer."""
    return {"math_verify_accuracy": float(answers_equal(gold, d1_answer(response)))}


def score_minerva(response: str, gold: str) -> dict[str, float]:
    """Base protocol: `final_answer_math_verify` (Minerva extraction) and `response_math_verify`
    (math-verify's extraction from the whole response)."""
    return {
        "final_answer_math_verify": float(answers_equal(gold, minerva_answer(response))),
        "response_math_verify": float(response_matches(gold, response)),
    }


__all__ = ["d1_answer", "minerva_answer", "score_d1", "score_minerva"]
