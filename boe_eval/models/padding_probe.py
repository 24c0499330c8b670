"""Does a denoiser honour the padding mask? A cheap probe run once at load time (issues 2 and 19).

LLaDA's hub remote code takes `attention_mask` but never applies it (padded positions are attended to) and
MDLM's has no mask argument at all; BERT-style models and Dream (given a 4-D mask) honour it. For a model
that does not, `settle_padding_mask` switches on mask injection (`boe_eval.models.mask_injection`: the key
padding mask handed to the attention kernel itself) and probes again: if the probe passes with it, the model
honours the mask from then on ("injected"); if not, injection is switched off again ("ignored"). The decoding
loop batches prompts of different lengths only for models that honour the mask, natively or injected
(`boe_eval.decoding.loop.generate_batched`), so that results never depend on batch composition. Which of the
three holds is recorded in every result row (`Denoiser.describe()["padding_mask"]`).

The probe: logits at the real positions of a short sequence must not change when junk tokens are appended
behind a zero attention mask. It compares two different junk fills of the same width, once hidden by the
mask and once visible: a model that honours the mask removes (nearly) all of the junk's influence when it is
hidden, one that ignores the mask does not. Measuring the visible influence on the same model in the same
dtype makes the verdict independent of the logits' scale and of the dtype's rounding; the unpadded sequence
is compared too (padding must not matter even when its content does not). Changes within the dtype's
rounding count as none: the junk comparisons take the largest change, the padded-vs-unpadded one the mean
change, because a wider canvas alone moves low-precision logits by a rounding step here and there (bf16:
up to 1.4% of their standard deviation in one entry on the MDLM stand-in, 0.02% on average), while padding
that matters moves them all.
"""

from __future__ import annotations

import torch
from torch import Tensor

from boe_eval.models.denoiser import Denoiser

#: real tokens and padded junk tokens in the probe sequence
PROBE_LENGTH = 8
JUNK_LENGTH = 8

#: hidden junk may keep at most this fraction of the influence it has when visible
HIDDEN_FRACTION = 0.1
#: changes below this (relative to the logits' standard deviation) count as rounding, whatever the influence
ROUNDING = {torch.float64: 1e-9, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def _relative_change(reference: Tensor, other: Tensor, mean: bool = False) -> float:
    """max (or mean) |reference - other| / std(reference) over finite entries; inf when the finite patterns
    differ (NaN or inf appearing at real positions counts as not honouring the mask)."""
    reference, other = reference.double(), other.double()
    finite = torch.isfinite(reference)
    if not torch.equal(finite, torch.isfinite(other)) or not bool(finite.any()):
        return float("inf")
    scale = reference[finite].std().clamp_min(1e-12)
    change = (reference[finite] - other[finite]).abs()
    return float((change.mean() if mean else change.max()) / scale)


@torch.no_grad()
def padding_sensitivity(denoiser: Denoiser, seed: int = 0) -> dict[str, float]:
    """Changes of the real positions' logits, each relative to their standard deviation: `hidden` between two
    junk fills behind the mask, `visible` between the same fills attended to (largest changes), `padding`
    between the unpadded sequence and a padded one (mean change)."""
    generator = torch.Generator().manual_seed(seed)
    vocab = denoiser.vocab_size
    real = torch.randint(0, vocab, (1, PROBE_LENGTH), generator=generator)
    real[0, 1::2] = denoiser.mask_id  # a partly masked canvas, as during decoding
    fills = [torch.randint(0, vocab, (1, JUNK_LENGTH), generator=generator) for _ in range(2)]
    device = denoiser.device
    timestep = torch.full((1,), 0.5, device=device) if denoiser.time_conditioned else None

    def real_logits(junk: Tensor | None, visible: bool = False) -> Tensor:
        ids = real if junk is None else torch.cat([real, junk], dim=1)
        mask = torch.ones_like(ids) if visible else torch.zeros_like(ids)
        mask[:, :PROBE_LENGTH] = 1
        logits = denoiser.logits(ids.to(device), attention_mask=mask.to(device), timestep=timestep)
        return logits[:, :PROBE_LENGTH].float().cpu()

    plain = real_logits(None)
    hidden_a, hidden_b = (real_logits(junk) for junk in fills)
    visible_a, visible_b = (real_logits(junk, visible=True) for junk in fills)
    return {
        "hidden": _relative_change(hidden_a, hidden_b),
        "visible": _relative_change(visible_a, visible_b),
        "padding": _relative_change(plain, hidden_a, mean=True),
    }


def honours_padding_mask(denoiser: Denoiser) -> bool:
    """True when the logits at real positions do not depend on right-padded junk behind the attention mask."""
    change = padding_sensitivity(denoiser)
    allowed = max(HIDDEN_FRACTION * change["visible"], ROUNDING.get(denoiser.dtype, 1e-2))
    return change["hidden"] <= allowed and change["padding"] <= allowed


def settle_padding_mask(denoiser: Denoiser) -> str:
    """Probe the model as it is, then with mask injection if it fails; set `honours_padding_mask` and
    `inject_padding_mask` from the verdicts and return `denoiser.padding_mask` ("model", "injected", "ignored")."""
    denoiser.inject_padding_mask = False
    denoiser.honours_padding_mask = honours_padding_mask(denoiser)
    if not denoiser.honours_padding_mask:
        denoiser.inject_padding_mask = True
        try:
            holds = honours_padding_mask(denoiser)
        except RuntimeError:  # the model's attention calls do not take the mask's shapes
            holds = False
        denoiser.inject_padding_mask = holds
        denoiser.honours_padding_mask = holds
    return denoiser.padding_mask


__all__ = ["honours_padding_mask", "padding_sensitivity", "settle_padding_mask"]
