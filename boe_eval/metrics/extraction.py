"""Answer extraction shared by the d1-format tasks, in the two readings the tasks report.

The d1 response format (dllm-reasoning/d1, eval/*.py) is
`<reasoning> ... </reasoning><answer> ... </answer>`. The d1 tasks decode the whole canvas, special
tokens included (d1 eval/eval.py: `batch_decode(out[:, -gen_length:], skip_special_tokens=False)`),
and score that text in two ways:

- **d1code** (the published protocol): exactly what d1's parsers do (eval/parse_and_get_acc.py,
  eval/parser_helper.py), quirks included. `d1_boxed` restates d1's
  `remove_boxed(last_boxed_only_string(text))`, `d1_answer_tag` its `<answer>(.*?)</answer>` search.
- **semantic** (the format's intent): the answer is what the model wrote before it closed the
  answer or stopped writing (`answer_region`), read from its last balanced `\\boxed{}` (`last_boxed`)
  or, failing that, from the `<answer>` tag (`answer_tag`; the end of the region closes it).
"""

from __future__ import annotations

import re

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_CLOSED_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
#: where the semantic reading stops: the closing tag, or an end-of-text special token of the
#: supported tokenizers (LLaDA/Llama `<|eot_id|>`, `<|endoftext|>`; Qwen/Dream `<|im_end|>`;
#: SentencePiece `</s>`; BERT `[SEP]`, `[PAD]`; the mask token of an early-stopped canvas)
END_OF_ANSWER = re.compile(
    r"</answer>|<\|(?:eot_id|endoftext|end_of_text|im_end|end|mdm_mask)\|>|</s>|\[SEP\]|\[PAD\]|\[MASK\]"
)


# ------------------------------------------------------------------------------------ semantic
def answer_region(response: str) -> str:
    """The response up to the first `</answer>` or end-of-text special token (the semantic reading)."""
    match = END_OF_ANSWER.search(response)
    return response[: match.start()] if match else response


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) with balanced braces; `\\boxed x` (a
    space instead of braces) yields the text up to the next `$`. None when there is none or its
    braces never close."""
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


# -------------------------------------------------------------------------------------- d1code
class NotBoxed(Exception):
    """d1's `remove_boxed(last_boxed_only_string(text))` raised: a `\\boxed{`/`\\fbox{` whose
    braces never close (d1 catches the error and falls back, differently per task)."""


def _d1_box_span(text: str) -> str | None:
    """d1's `last_boxed_only_string`: see `d1_boxed`."""
    if "\\boxed " in text:  # anywhere in the text, even before a later \boxed{...}
        return "\\boxed " + text.split("\\boxed ")[-1].split("$")[0]
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
    if start < 0:
        return text  # no box: the whole text
    depth = 0
    for pos in range(start, len(text)):
        depth += (text[pos] == "{") - (text[pos] == "}")
        if text[pos] == "}" and depth == 0:
            return text[start : pos + 1]
    return None


def d1_boxed(text: str) -> str:
    """d1's `remove_boxed(last_boxed_only_string(text))`:

    - if `\\boxed ` (with a space) occurs anywhere: what follows its last occurrence, up to `$`;
    - else the last `\\boxed` (or, without one, the last `\\fbox`) through the `}` where the brace
      count from there first returns to zero; a `\\boxed{...}` span loses its wrapper, an `\\fbox{...}`
      span is kept whole;
    - no `\\boxed`/`\\fbox` at all: the **whole text**;
    - braces never close: `NotBoxed` is raised.
    """
    span = _d1_box_span(text)
    if span is None:
        raise NotBoxed(text[-40:])
    if span.startswith("\\boxed "):
        return span[len("\\boxed ") :]
    if span.startswith("\\boxed{") and span.endswith("}"):
        return span[len("\\boxed{") : -1]
    return span


def d1_answer_tag(text: str) -> str | None:
    """d1's `<answer>(.*?)</answer>` (first closed tag, DOTALL), stripped; None without one."""
    match = _CLOSED_ANSWER_TAG.search(text)
    return match.group(1).strip() if match else None


__all__ = [
    "END_OF_ANSWER",
    "NotBoxed",
    "answer_region",
    "answer_tag",
    "d1_answer_tag",
    "d1_boxed",
    "last_boxed",
]
