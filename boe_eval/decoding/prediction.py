"""The current-step prediction: the forward's logits made usable (float32, forbidden ids at -inf,
the NaN/inf guard) and the proposed token per slot (argmax at T = 0, Gumbel-max at T > 0, as
LLaDA's `add_gumbel_noise`, docs/references.md §1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def propose_tokens(logits: Tensor, eligible: Tensor, temperature: float, generators: list[torch.Generator]) -> Tensor:
    """x0: argmax everywhere; at eligible slots a Gumbel-max sample at `temperature` when T > 0
    (argmax of logits/T + Gumbel noise in float64, as LLaDA's `add_gumbel_noise`)."""
    x0 = logits.argmax(-1)
    if temperature > 0:
        for j, g in enumerate(generators):
            idx = eligible[j].nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            rows = logits[j, idx].double()
            u = torch.rand(rows.shape, generator=g, device=g.device, dtype=torch.float64).to(rows.device)
            gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
            x0[j, idx] = (rows / temperature + gumbel).argmax(-1)
    return x0


def unusable_slots(logits: Tensor, eligible: Tensor) -> Tensor:
    """Eligible slots [b, L] whose prediction cannot give probabilities: a NaN or +inf logit, or no
    finite logit at all (bf16/fp16 overflow). -inf alone is legal (forbidden ids). Exactly the slots whose
    logsumexp is not finite, found with one max per slot (max propagates NaN; a finite max m bounds the
    logsumexp to [m, m + log V]), without the exp and log over the vocabulary; eligible slots only."""
    unusable = torch.zeros_like(eligible)
    if bool(eligible.any()):
        unusable[eligible] = ~torch.isfinite(logits[eligible].amax(dim=-1))
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


__all__ = ["Prediction", "discard_predictions", "prepare_prediction", "propose_tokens", "unusable_slots"]
