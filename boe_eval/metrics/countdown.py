"""Countdown scoring of the d1 protocol, the whole decoded canvas read two ways.

- `solved_rate_d1code` = dllm-reasoning/d1 eval/parse_and_get_acc.py::parse_countdown_answers:
  the expression is d1's `remove_boxed(last_boxed_only_string(text))` (no `\\boxed` at all: the
  whole text); only when a `\\boxed{` never closes does the first closed `<answer>...</answer>` (else
  the whole text) count. `\\div`, `\\times`, `\\cdot` become `/`, `*`, `*`; when the text holds
  `expression = number`, the expression is kept. Correct iff its integers (`\\d+`) are exactly the
  given numbers and Python's `eval` of it, on the characters `0-9 + - * / ( ) .` and whitespace, is
  within 1e-5 of the target: `**` and `//` count, as in d1. An expression with `**` is evaluated in
  a child process with a deadline (`9**9**9` would run for hours); one that misses it counts as
  wrong (d1 would still be computing).
- `solved_rate_semantic` (the prompt's rule): the last balanced `\\boxed{}` of the answer region
  (up to `</answer>` or the end of the text), else its `<answer>` content (closed or not), else the
  region; evaluated over `+ - * /`, brackets and unary signs only (the operations the prompt allows).
"""

from __future__ import annotations

import ast
import logging
import math
import operator
import re
import subprocess
import sys
import warnings

from boe_eval.metrics.extraction import NotBoxed, answer_region, answer_tag, d1_answer_tag, d1_boxed, last_boxed

TOLERANCE = 1e-5
POWER_DEADLINE_S = 5.0
_ALLOWED_CHARS = re.compile(r"^[\d+\-*/().\s]+$")
_LHS_OF_EQUATION = re.compile(r"([0-9+\-*/() ]+)=[0-9. ]+")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
log = logging.getLogger(__name__)


def _normalise(expression: str) -> str:
    """LaTeX operators to Python's, and only the left-hand side of `expression = number`."""
    expression = expression.replace("\\div", "/").replace("\\times", "*").replace("\\cdot", "*")
    match = _LHS_OF_EQUATION.search(expression)
    return match.group(1).strip() if match else expression


def uses_numbers_once(expression: str, numbers: list[int]) -> bool:
    """The integers written in the expression are exactly `numbers` (as a multiset)."""
    return sorted(int(n) for n in re.findall(r"\d+", expression)) == sorted(numbers)


# -------------------------------------------------------------------------------------- d1code
def d1code_expression(response: str) -> str:
    """d1's expression, exactly as its code reads the whole decoded text (module docstring)."""
    try:
        expression = d1_boxed(response)
    except NotBoxed:
        tagged = d1_answer_tag(response)
        expression = tagged if tagged is not None else response
    return _normalise(expression)


_CHILD = (
    "import sys\n"
    "sys.set_int_max_str_digits(0)\n"
    "source, target = sys.stdin.read().split('\\0')\n"
    "try:\n"
    "    value = eval(source, {'__builtins__': None}, {})\n"
    "    print(1 if abs(value - eval(target, {'__builtins__': None}, {})) < 1e-5 else 0)\n"
    "except Exception:\n"
    "    print(0)\n"
)


def _close_in_child(source: str, target: int | float, deadline_s: float) -> bool:
    """`abs(eval(source) - target) < 1e-5` computed by a child Python under a deadline and a 2 GiB
    address-space limit; False when it misses the deadline or dies."""

    def limit_memory() -> None:  # pragma: no cover (runs in the child)
        import resource

        try:
            resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
        except (ValueError, OSError):  # a platform without the limit: the deadline still holds
            pass

    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _CHILD],
            input=f"{source}\0{target!r}",
            capture_output=True,
            text=True,
            timeout=deadline_s,
            preexec_fn=limit_memory,
        )
    except subprocess.TimeoutExpired:
        log.warning("Countdown expression %.60r took more than %.0f s: scored 0", source, deadline_s)
        return False
    return done.stdout.strip() == "1"


def d1code_is_correct(expression: str, numbers: list[int], target: float, deadline_s: float = POWER_DEADLINE_S) -> bool:
    """d1's check: the numbers used exactly once and `eval` within 1e-5 of the target (docstring)."""
    if not uses_numbers_once(expression, numbers) or not _ALLOWED_CHARS.match(expression):
        return False
    source = expression.strip()
    with warnings.catch_warnings():  # e.g. "'int' object is not callable" for `(3)(4)`
        warnings.simplefilter("ignore", SyntaxWarning)
        try:
            code = compile(source, "<countdown>", "eval")
        except Exception:  # noqa: BLE001  (d1's eval raises too: not an answer)
            return False
    if "**" in source:  # a power can run for hours: a child process with a deadline
        return _close_in_child(source, target, deadline_s)
    try:  # without `**` the characters allow nothing but fast arithmetic on short literals
        value = eval(code, {"__builtins__": None}, {})  # noqa: S307
        return abs(value - target) < TOLERANCE
    except Exception:  # noqa: BLE001  (d1 scores any error as infinitely far from the target)
        return False


# ------------------------------------------------------------------------------------ semantic
def semantic_expression(response: str) -> str:
    """The expression the prompt asks for (module docstring)."""
    region = answer_region(response)
    expression = last_boxed(region)
    if expression is None:
        tagged = answer_tag(region)
        expression = tagged if tagged is not None else region
    return _normalise(expression)


def _evaluate_node(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate_node(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate_node(node.left), _evaluate_node(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate_node(node.operand))
    raise ValueError(f"not allowed in a Countdown expression: {ast.dump(node)[:60]}")


def evaluate(expression: str) -> float | None:
    """Value of an arithmetic expression over + - * / and brackets; None if it is not one (or divides by 0)."""
    if not _ALLOWED_CHARS.match(expression):
        return None
    try:
        value = float(_evaluate_node(ast.parse(expression.strip(), mode="eval")))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError, MemoryError):
        return None
    return value if math.isfinite(value) else None


def is_correct(expression: str, numbers: list[int], target: float) -> bool:
    """The prompt's rule: every given number used exactly once, only + - * /, value within 1e-5."""
    if not uses_numbers_once(expression, numbers):
        return False
    value = evaluate(expression)
    return value is not None and abs(value - target) < TOLERANCE


def score(response: str, numbers: list[int], target: float) -> dict[str, float]:
    """`solved_rate_d1code` and `solved_rate_semantic` of one response."""
    return {
        "solved_rate_d1code": float(d1code_is_correct(d1code_expression(response), numbers, target)),
        "solved_rate_semantic": float(is_correct(semantic_expression(response), numbers, target)),
    }


__all__ = [
    "d1code_expression",
    "d1code_is_correct",
    "evaluate",
    "is_correct",
    "score",
    "semantic_expression",
    "uses_numbers_once",
]
