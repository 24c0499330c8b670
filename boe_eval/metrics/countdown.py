"""Countdown scoring (d1 protocol, dllm-reasoning/d1 eval/parse_and_get_acc.py::parse_countdown_answers).

The expression is the content of the last `\\boxed{}`; without one, the content of `<answer>`;
without that, the whole response. `\\div`, `\\times`, `\\cdot` become `/`, `*`, `*`, and when the
text holds `expression = number` only the expression is kept. It is correct (`solved_rate`) iff
its integers are exactly the given numbers (each used once) and its value is within 1e-5 of the
target.

d1 evaluates the expression with Python `eval` over the characters `0-9+-*/(). `, which also
accepts `**` and `//`; here an arithmetic-tree evaluator allows only `+ - * /`, brackets and unary
signs (the operations the prompt allows), so `9**9**9` is rejected instead of running for ever.
"""

from __future__ import annotations

import ast
import operator
import re

from boe_eval.metrics.extraction import answer_tag, last_boxed

TOLERANCE = 1e-5
_ALLOWED_CHARS = re.compile(r"^[\d+\-*/().\s]+$")
_LHS_OF_EQUATION = re.compile(r"([0-9+\-*/() ]+)=[0-9. ]+")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def extract_expression(response: str) -> str:
    """d1's expression extraction (see the module docstring)."""
    expression = last_boxed(response)
    if expression is None:
        tagged = answer_tag(response)
        expression = tagged if tagged is not None else response
    expression = expression.replace("\\div", "/").replace("\\times", "*").replace("\\cdot", "*")
    match = _LHS_OF_EQUATION.search(expression)
    if match:
        expression = match.group(1).strip()
    return expression


def uses_numbers_once(expression: str, numbers: list[int]) -> bool:
    """The integers written in the expression are exactly `numbers` (as a multiset)."""
    return sorted(int(n) for n in re.findall(r"\d+", expression)) == sorted(numbers)


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
        return float(_evaluate_node(ast.parse(expression.strip(), mode="eval")))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError, MemoryError):
        return None


def is_correct(expression: str, numbers: list[int], target: float) -> bool:
    """d1's rule: every given number used exactly once and the value within 1e-5 of the target."""
    if not uses_numbers_once(expression, numbers):
        return False
    value = evaluate(expression)
    return value is not None and abs(value - target) < TOLERANCE


def score(response: str, numbers: list[int], target: float) -> dict[str, float]:
    """`solved_rate` of one response."""
    return {"solved_rate": float(is_correct(extract_expression(response), numbers, target))}


__all__ = ["evaluate", "extract_expression", "is_correct", "score", "uses_numbers_once"]
