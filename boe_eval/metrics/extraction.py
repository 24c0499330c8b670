"""Answer extraction shared by the tasks: the last `\\boxed{...}` and the `<answer>` tag of the d1 format.

The d1 response format (dllm-reasoning/d1, eval/*.py) is
`<reasoning> ... </reasoning><answer> ... </answer>`. The task YAMLs stop generation at
`</answer>` (lm-eval removes the stop string from the response), so an `<answer>` tag that is still
open at the end of the text counts as closed there.
"""

from __future__ import annotations

import re

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) with balanced braces; `\\boxed x` (a
    space instead of braces) yields the text up to the next `$`. None when there is none or its
    braces never close (the `last_boxed_only_string` + `remove_boxed` pair of the MATH code)."""
    idx = text.rfind("\\boxed")
    if idx < 0:
        idx = text.rfind("\\fbox")
        if idx < 0:
            return None
    head = text[idx:]
    if head.startswith("\\boxed "):
        return head[len("\\boxed ") :].split("$")[0]
    open_brace = text.find("{", idx)
    if open_brace < 0:
        return None
    depth = 0
    for pos in range(open_brace, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1 : pos]
    return None


def answer_tag(text: str) -> str | None:
    """Stripped content of the first `<answer>` tag (closed by `</answer>` or the end of the text)."""
    match = _ANSWER_TAG.search(text)
    return match.group(1).strip() if match else None


__all__ = ["answer_tag", "last_boxed"]
