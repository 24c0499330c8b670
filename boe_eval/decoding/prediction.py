"""The current-step prediction: the forward's logits made usable (float32, forbidden ids at -inf,
the NaN/inf guard) and the proposed token per slot (argmax at T = 0, Gumbel-max at T > 0, as
LLaDA's `add_gumbel_noise`, docs/references.md §1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def gumbel_max_tokens(
    log_weights: Callable[[int, Tensor], Tensor], eligible: Tensor, generators: list[torch.Generator], fallback: Tensor
) -> Tensor:
    """Tokens [b, L]: at the eligible slots of row j, argmax(log_weights(j, idx) + Gumbel noise) in float64, a
    sample of softmax(log w) drawn from row j's own generator (one uniform per slot and id, in slot order);
    `fallback` elsewhere. `log_weights(j, idx)` gives the [n, V] log weights of those slots only (a block's worth,
    not the whole canvas). The one Gumbel-max of the project: the loop's proposal and the policies that own theirs
    (`Sampler.propose_tokens`) both draw through it."""
    tokens = fallback.clone()
    for j, g in enumerate(generators):
        idx = eligible[j].nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        weights = log_weights(j, idx).double()
        u = torch.rand(weights.shape, generator=g, device=g.device, dtype=torch.float64).to(weights.device)
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
        tokens[j, idx] = (weights + gumbel).argmax(-1)
    return tokens


def propose_tokens(logits: Tensor, eligible: Tensor, temperature: float, generators: list[torch.Generator]) -> Tensor:
    """x0: argmax everywhere; at eligible slots a Gumbel-max sample at `temperature` when T > 0
    (argmax of logits/T + Gumbel noise in float64, as LLaDA's `add_gumbel_noise`)."""
    x0 = logits.argmax(-1)
    if temperature > 0:
        x0 = gumbel_max_tokens(lambda j, idx: logits[j, idx].double() / temperature, eligible, generators, x0)
    return x0


def unusable_slots(logits: Tensor, eligible: Tensor) -> Tensor:
    """Eligible slots [b, L] whose prediction cannot give probabilities: a NaN or +inf logit, or no
    finite logit at all (bf16/fp16 overflow). -inf alone is legal (forbidden ids). Only the eligible slots
    are normalised (a block's worth of rows, not the whole canvas times the vocabulary)."""
    unusable = torch.zeros_like(eligible)
    if bool(eligible.any()):
        unusable[eligible] = ~torch.isfinite(torch.logsumexp(logits[eligible], dim=-1))
    return unusable


def discard_predictions(logits: Tensor, slots: Tensor, forbidden: Tensor) -> Tensor:
    """Replace the prediction at `slots` by the uniform distribution over allowed tokens, so those
    slots get the lowest confidence and are written last (the numerical fallback)."""
    uniform = torch.zeros(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    uniform[forbidden] = float("-inf")
    return torch.where(slots.unsqueeze(-1), uniform, logits)


@dataclass
class Prediction:
    logits: Tensor  #: [b, L, V] float32 or float64, forbidden ids at -inf
    x0: Tensor  #: [b, L] proposed tokens
    unusable: Tensor  #: [b] bool, rows whose prediction had to be discarded somewhere (confidence fallback)


@torch.no_grad()
def prepare_prediction(
    logits: Tensor, eligible: Tensor, forbidden: Tensor, temperature: float, generators: list[torch.Generator]
) -> Prediction:
    """From raw logits to the step's prediction (see the module docstring)."""
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    logits[..., forbidden] = float("-inf")
    unusable = unusable_slots(logits, eligible)
    rows = unusable.any(1)
    if bool(rows.any()):
        logits = discard_predictions(logits, unusable, forbidden)
    return Prediction(logits=logits, x0=propose_tokens(logits, eligible, temperature, generators), unusable=rows)


__all__ = ["Prediction", "discard_predictions", "gumbel_max_tokens", "prepare_prediction", "propose_tokens", "unusable_slots"]
