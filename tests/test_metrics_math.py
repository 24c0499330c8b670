"""GSM8K and MATH500 metrics on the full vendored test sets (reference answers score 1, corrupted
answers 0), the d1code and semantic readings case by case (agreement with d1's code on many more
cases: tests/test_d1_agreement.py), and the math-verify deadline (a hanging comparison is
killed, scored 0, and the next comparison works, also off the main thread)."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from boe_eval.metrics import gsm8k, math500
from boe_eval.metrics.math_equivalence import MathVerifier, answers_equal, shared_verifier

TASKS = Path(__file__).resolve().parents[1] / "tasks"


def _jsonl(path: Path) -> list[dict]:
    with path.open() as fh:
        return [json.loads(line) for line in fh]


def d1_response(answer: str, reasoning: str = "Work it out step by step.") -> str:
    """d1's format as the adapter returns it for a LLaDA canvas: `<reasoning>` is prefilled, the
    whole canvas is decoded with its special tokens (end-of-turn, then EOS padding)."""
    return f"\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer><|eot_id|>" + "<|endoftext|>" * 3


# ------------------------------------------------------------------------------------- GSM8K
GSM8K = _jsonl(TASKS / "gsm8k" / "data" / "test.jsonl")


def _final(answer: str) -> Decimal:
    """Independent reading of the reference: the number after '#### ' with ',' removed."""
    head, _, tail = answer.rpartition("#### ")
    assert head and "\n" not in tail
    return Decimal(tail.strip().replace(",", ""))


def test_every_gsm8k_reference_scores_one_and_an_off_by_one_answer_zero():
    assert len(GSM8K) == 1319
    for row in GSM8K:
        reference, gold = row["answer"], _final(row["answer"])
        # base protocol: the reference solution itself is a perfect response
        assert gsm8k.score_base(reference, reference) == {"exact_match_strict": 1.0, "exact_match_flexible": 1.0}
        # d1 protocol: the reasoning, then the number boxed inside <answer>
        reasoning = reference.rpartition("####")[0].strip()
        # d1 reads the reference with `#### $N` (no sign): the two negative answers are never right
        assert gsm8k.score_d1(d1_response(f"\\boxed{{{gold}}}", reasoning), reference) == {
            "boxed_answer_accuracy_d1code": float(gold >= 0),
            "boxed_answer_accuracy_semantic": 1.0,
            "exact_match_flexible": 1.0,
        }
        wrong = gold + 1
        corrupted = reference.rpartition("#### ")[0] + f"#### {wrong}"
        assert gsm8k.score_base(corrupted, reference) == {"exact_match_strict": 0.0, "exact_match_flexible": 0.0}
        assert gsm8k.score_d1(d1_response(f"\\boxed{{{wrong}}}", reasoning), reference) == {
            "boxed_answer_accuracy_d1code": 0.0,
            "boxed_answer_accuracy_semantic": 0.0,
            "exact_match_flexible": 0.0,
        }


@pytest.mark.parametrize(
    "response, strict, flexible",
    [
        ("so she has 18 eggs.\n#### 18", "18", "18"),
        ("The answer is $1,250.00.", "[invalid]", "$1,250.00."),  # strict needs '#### '
        ("#### 7\nQuestion: 3 and 4", "7", "4"),  # strict: first '####'; flexible: last number
        ("no digits here", "[invalid]", "[invalid]"),
    ],
)
def test_gsm8k_strict_and_flexible_extraction_are_lm_evals(response, strict, flexible):
    assert gsm8k.strict_answer(response) == strict
    assert gsm8k.flexible_answer(response) == flexible


def test_gsm8k_exact_match_ignores_commas_dollars_and_a_final_period_like_lm_eval():
    reference = "... #### 1250"
    assert gsm8k.score_base("It costs $1,250.", reference)["exact_match_flexible"] == 1.0
    assert gsm8k.score_base("It costs 1250.5", reference)["exact_match_flexible"] == 0.0
    assert gsm8k.score_base("#### 1250.00", reference)["exact_match_strict"] == 0.0  # a string match, as lm-eval


def test_d1s_reading_of_the_gsm8k_references():
    # d1 reads the reference with its own pattern (`#### $N`, commas dropped) as a float; it has no
    # sign, so the two negative answers of the test set read as None (d1 scores them 0 for any answer)
    negative = [row for row in GSM8K if _final(row["answer"]) < 0]
    assert [str(_final(row["answer"])) for row in negative] == ["-10", "-3"]
    for row in GSM8K:
        gold = _final(row["answer"])
        assert gsm8k.d1_reference(row["answer"]) == (float(gold) if gold >= 0 else None)


@pytest.mark.parametrize(
    "response, d1code, semantic",
    [
        (d1_response("\\boxed{18}"), 18.0, 18.0),
        (d1_response("\\boxed{...} then \\boxed{18 dollars}"), 18.0, 18.0),  # placeholder skipped, first number
        (d1_response("\\boxed{x} \\boxed{7}"), 7.0, 7.0),  # first box that holds a number
        (d1_response("She makes 18 dollars, 3 times"), 3.0, 3.0),  # no box: last number in <answer>
        (d1_response("\\boxed{1,000}"), 1.0, 1.0),  # d1's quirk, kept in both
        ("\nso 5\n</reasoning>\n<answer>\n5\n</answer>\nThe answer is \\boxed{6}.<|endoftext|>", 6.0, 5.0),  # box after the tag
        ("\nso 5\n</reasoning>\n<answer>\n5<|eot_id|><|endoftext|>", None, 5.0),  # unclosed tag
        ("just 42 without tags", None, None),
    ],
)
def test_gsm8k_d1code_and_semantic_readings(response, d1code, semantic):
    assert gsm8k.d1code_answer(response) == d1code
    assert gsm8k.semantic_answer(response) == semantic


# ----------------------------------------------------------------------------------- MATH500
MATH500 = _jsonl(TASKS / "math500" / "data" / "test.jsonl")


def test_every_math500_answer_scores_one_in_each_protocol_and_corrupted_answers_zero():
    assert len(MATH500) == 500
    for row in MATH500:
        answer = row["answer"]
        # d1 protocol: the dataset's own solution (its last \boxed{}) and a d1-format response
        both = {"math_accuracy_d1code": 1.0, "math_verify_accuracy_semantic": 1.0}
        assert math500.score_d1(row["solution"], answer) == both, answer
        assert math500.score_d1(d1_response(f"\\boxed{{{answer}}}"), answer) == both, answer
        # Minerva protocol: the closing sentence of the 4-shot exemplars
        minerva = f"We compute it.\nFinal Answer: The final answer is ${answer}$. I hope it is correct."
        assert math500.score_minerva(minerva, answer) == {
            "final_answer_math_verify": 1.0,
            "response_math_verify": 1.0,
        }, answer
        # corrupted: one plus the answer (a suffix would not do: the MATH normaliser drops
        # everything from `\text{ ` on, so `\frac{270}7\text{ degrees}+1` equals the answer)
        neither = {"math_accuracy_d1code": 0.0, "math_verify_accuracy_semantic": 0.0}
        assert math500.score_d1(d1_response(f"\\boxed{{1+{answer}}}"), answer) == neither, answer
        assert answers_equal(answer, f"{answer}+1") is False, answer


def test_math_verify_sees_equivalent_forms_and_rejects_different_values():
    assert answers_equal("\\frac{1}{2}", "0.5")
    assert answers_equal("\\dfrac{14}{3}", "\\frac{14}{3}")
    assert answers_equal("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)")
    assert answers_equal("x^2+2x+1", "(x+1)^2")
    assert not answers_equal("\\frac{1}{2}", "0.49")
    assert not answers_equal("12", None)
    assert not answers_equal("12", "   ")


def test_math500_extraction_rules():
    for read in (math500.d1code_answer, math500.semantic_answer):
        assert read("a \\boxed{1} b \\boxed{\\frac{a}{b}} c") == "\\frac{a}{b}"  # last box, nested braces
    # no box: d1's code takes the whole text, the semantic reading the <answer> content
    assert math500.d1code_answer(d1_response("42")) == d1_response("42")
    assert math500.semantic_answer(d1_response("42")) == "42"
    # a box that never closes: d1 falls back to a closed <answer>, else has no answer
    assert math500.d1code_answer("<answer>7</answer> \\boxed{unclosed") == "7"
    assert math500.d1code_answer("\\boxed{unclosed") is None
    assert math500.semantic_answer("\\boxed{unclosed") is None
    assert math500.minerva_answer("Final Answer: The final answer is $24$. I hope it is correct.") == "24"
    assert math500.minerva_answer("Final Answer: The final answer is $24$.") == "24"  # cut before the last sentence
    assert math500.minerva_answer("The answer is 24.") is None
    scores = math500.score_minerva("so the total is \\boxed{24}.", "24")
    assert scores == {"final_answer_math_verify": 0.0, "response_math_verify": 1.0}


# ------------------------------------------------------------------- math-verify under a deadline
HANGS = "9^{9^{9^{9}}}"  # sympy tries to evaluate it and never returns


def test_a_hanging_comparison_is_killed_at_its_deadline_and_a_dead_worker_is_replaced():
    verifier = MathVerifier(timeout_s=2.0)
    try:
        assert verifier.equal("3", "3")  # starts the worker
        start = time.monotonic()
        assert verifier.equal("3", HANGS) is False
        elapsed = time.monotonic() - start
        assert 2.0 <= elapsed < 8.0
        assert verifier.timeouts == 1
        assert verifier.equal("\\frac{1}{2}", "0.5")  # a fresh worker took over
        verifier._proc.kill()  # e.g. killed for memory
        verifier._proc.wait()
        assert verifier.equal("2", "4/2")  # replaced again
        assert verifier.timeouts == 1
    finally:
        verifier.close()


def test_verification_works_off_the_main_thread():
    # math-verify's own signal-based timeouts raise ValueError here; ours do not use signals
    results = []
    worker = threading.Thread(target=lambda: results.append(shared_verifier().equal("\\frac{1}{2}", "0.5")))
    worker.start()
    worker.join(60)
    assert results == [True]


def test_bad_timeout_is_a_clear_error():
    from boe_eval.errors import ConfigError

    with pytest.raises(ConfigError, match="timeout_s=0"):
        MathVerifier(timeout_s=0)


def test_a_worker_that_cannot_start_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "executable", "/bin/true")  # exits at once, like a missing math-verify
    verifier = MathVerifier(timeout_s=5.0)
    with pytest.raises(RuntimeError, match="exited at start"):
        verifier.equal("1", "1")
    verifier.close()


def test_gsm8k_base_equals_lm_evals_own_gsm8k_task_config():
    """The base protocol's scores equal what lm-eval's shipped `gsm8k` task (v3) computes: its two
    filter pipelines (built from lm-eval's own gsm8k.yaml) and its exact_match with the yaml's
    arguments, on the reference solutions and on answers written in other ways."""
    from importlib.resources import files

    import yaml
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_metric
    from lm_eval.filters import build_filter_ensemble

    config = yaml.safe_load((files("lm_eval") / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_constructor("!function", lambda loader_, node: loader_.construct_scalar(node))
    mine = yaml.load((TASKS / "gsm8k" / "gsm8k_base.yaml").read_text(), Loader=loader)  # noqa: S506
    assert mine["generation_kwargs"]["until"] == config["generation_kwargs"]["until"]
    assert (mine["num_fewshot"], mine["doc_to_text"]) == (config["num_fewshot"], config["doc_to_text"])
    pipelines = {
        f["name"]: build_filter_ensemble(f["name"], [[step["function"], {k: v for k, v in step.items() if k != "function"}] for step in f["filter"]])
        for f in config["filter_list"]
    }
    (metric,) = config["metric_list"]
    kwargs = {k: v for k, v in metric.items() if k not in {"metric", "aggregation", "higher_is_better"}}
    exact_match = get_metric(metric["metric"])

    def lm_eval_scores(response: str, reference: str) -> dict[str, float]:
        out = {}
        for name, key in (("strict-match", "exact_match_strict"), ("flexible-extract", "exact_match_flexible")):
            inst = Instance("generate_until", {}, ("", {}), 0)
            inst.resps = [response]
            pipelines[name].apply([inst])
            prediction = inst.filtered_resps[name]
            out[key] = float(exact_match(references=[reference], predictions=[prediction], **kwargs)["exact_match"])
        return out

    checked = 0
    for row in GSM8K[::7]:
        reference = row["answer"]
        head, _, final = reference.rpartition("#### ")
        for response in (
            reference,
            head + f"#### {final}.",
            head + f"#### ${final}",
            head + f"The answer is {final}.\n\nQuestion: next",
            head + f"#### {int(final.replace(',', '')) + 1}",
            f"{final} is wrong, it is 0",
        ):
            assert gsm8k.score_base(response, reference) == lm_eval_scores(response, reference), response[-60:]
            checked += 1
    assert checked == 6 * len(GSM8K[::7])
