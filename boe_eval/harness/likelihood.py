"""lm-eval log-likelihood requests -> token pairs for the ELBO estimator (`boe_eval.decoding.elbo`).

* `encode_pair`: lm-eval's `TemplateLM._encode_pair` convention (trailing spaces of the context
  move to the continuation; the continuation is the tail of the tokenised whole beyond the
  tokenised context), with the context encoded as generation prompts are (the model's special
  tokens, no trailing EOS) and the continuation without special tokens.
* `fit_context`: contexts longer than the model's window lose their oldest tokens, as in lm-eval's
  HF backend; a continuation that does not fit is an error.
* `rolling_windows`: `loglikelihood_rolling` as lm-eval's HF backend defines it with
  `context_len=1`: the text split into disjoint windows, each scored given only the model's
  start tokens; the text's value is the sum of the windows' ELBOs (a lower bound of the same
  product of window likelihoods; one window when the model has no position limit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def encode_pair(
    tokenizer, encode_context: Callable[[str], list[int]], context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) of an lm-eval (context, continuation) request."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    bare_context = tokenizer(context, add_special_tokens=False).input_ids if context else []
    return list(encode_context(context)), list(whole[len(bare_context) :])


def fit_context(context: Sequence[int], continuation: Sequence[int], max_length: int | None) -> list[int]:
    """The context, left-truncated so that context + continuation fits in `max_length` positions."""
    if max_length is None or len(context) + len(continuation) <= max_length:
        return list(context)
    if len(continuation) > max_length:
        raise ValueError(
            f"continuation of {len(continuation)} tokens exceeds the model's {max_length} positions"
        )
    keep = max_length - len(continuation)
    return list(context[len(context) - keep :]) if keep else []


def rolling_windows(
    tokens: Sequence[int], prefix: Sequence[int], max_length: int | None
) -> list[tuple[list[int], list[int]]]:
    """Disjoint (prefix, window) pairs covering `tokens`, each at most `max_length` tokens in all."""
    if not tokens:
        return []
    size = len(tokens) if max_length is None else max_length - len(prefix)
    if size <= 0:
        raise ValueError(f"the model's {max_length} positions leave no room after {len(prefix)} start tokens")
    return [(list(prefix), list(tokens[s : s + size])) for s in range(0, len(tokens), size)]


__all__ = ["encode_pair", "fit_context", "rolling_windows"]
