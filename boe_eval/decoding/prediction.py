"""The prediction step, shared by the loop and the look-ahead samplers: the diffusion time of a canvas, a
forward's logits made usable (float32, forbidden ids at -inf, the NaN/inf guard), the entropy of a
prediction, and the proposed token per slot (argmax at T = 0, Gumbel-max at T > 0, as LLaDA's
`add_gumbel_noise`, docs/references.md §1). A look-ahead sampler (LookUM, Info-Gain, BoE) makes its extra
forwards with `lookahead_logits` and reads them with `forbid` / `entropy`, so its predictions are made the
way the loop makes the current one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

#: smallest diffusion time passed to a time-conditioned denoiser (t = 0 would mean a clean canvas)
MIN_TIME = 1e-5


def current_timestep(masked: Tensor, gen_length: int) -> Tensor:
    """t [b] of a canvas: its fraction of masked generation slots (MDLM's linear time, at least MIN_TIME)."""
    return (masked.sum(1).float() / gen_length).clamp(min=MIN_TIME)


def timestep_after(timestep: Tensor | None, masked_now: Tensor, masked_after: Tensor) -> Tensor | None:
    """t [b] of a look-ahead canvas: the current t scaled by the fraction of masks left after the writes
    (`masked_now`, `masked_after`: per-row counts); None for time-independent denoisers."""
    if timestep is None:
        return None
    remaining = masked_after.float() / masked_now.clamp(min=1).float()
    return (timestep * remaining.to(timestep.device)).clamp(min=MIN_TIME)


def forbid(logits: Tensor, forbidden: Tensor | Sequence[int], inplace: bool = False) -> Tensor:
    """Logits usable as a prediction: half precision promoted to float32, forbidden ids at -inf (written into
    `logits` itself only when `inplace` and it is already float32/64)."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    elif not inplace:
        logits = logits.clone()
    forbidden = list(forbidden) if not isinstance(forbidden, Tensor) else forbidden
    if len(forbidden):
        logits[..., forbidden] = float("-inf")
    return logits


def entropy(logits: Tensor) -> Tensor:
    """H(softmax(logits)) in nats [...] of predictions [..., V] (forbidden ids at -inf contribute 0)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return entropy_of_log_probs(log_probs)


def entropy_of_log_probs(log_probs: Tensor) -> Tensor:
    """H in nats [...] from log-probabilities [..., V] (0 * log 0 = 0)."""
    return -(log_probs.exp() * log_probs).nan_to_num().sum(-1)


def lookahead_logits(ctx, states: Tensor, still_masked: Tensor, index: Tensor | None = None) -> Tensor:
    """One metered forward of look-ahead canvases `states` [n, L] (window columns, as `ctx.x`) for the rows
    `index` of the step (default: all), at the time after their writes; raw logits [n, L, V]. `still_masked`
    [n, L] are the slots still masked in `states`."""
    rows, attention, masked = ctx.rows, ctx.attention_mask, ctx.masked
    timestep = ctx.timestep
    if index is not None:
        rows, attention, masked = rows[index.cpu()], attention[index], masked[index]
        timestep = None if timestep is None else timestep[index]
    timestep = timestep_after(timestep, masked.sum(1), still_masked.sum(1))
    return ctx.model.forward(rows, states, attention_mask=attention, timestep=timestep)


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
    logits = forbid(logits, forbidden, inplace=True)
    unusable = unusable_slots(logits, eligible)
    rows = unusable.any(1)
    if bool(rows.any()):
        logits = discard_predictions(logits, unusable, forbidden)
    return Prediction(logits=logits, x0=propose_tokens(logits, eligible, temperature, generators), unusable=rows)


__all__ = [
    "MIN_TIME",
    "Prediction",
    "current_timestep",
    "discard_predictions",
    "entropy",
    "entropy_of_log_probs",
    "forbid",
    "gumbel_max_tokens",
    "lookahead_logits",
    "prepare_prediction",
    "propose_tokens",
    "timestep_after",
    "unusable_slots",
]
