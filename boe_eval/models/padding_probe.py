"""Does a denoiser honour the padding mask? A cheap probe run once at load time (issue 2).

LLaDA's hub remote code takes `attention_mask` but never applies it (padded positions are attended to) and
MDLM's has no mask argument at all; BERT-style models and Dream (given a 4-D mask) honour it. The decoding
loop batches prompts of different lengths only for models that honour the mask
(`boe_eval.decoding.loop.generate_batched`), so that results never depend on batch composition.

The probe: logits at the real positions of a short sequence must not change when junk tokens are appended
behind a zero attention mask. Two different junk fills of the same width are compared (a model that honours
the mask gives the same logits up to rounding, one that ignores it does not), and each against the unpadded
sequence (a looser check: a different sequence width may change the kernel's rounding).
"""

from __future__ import annotations

import torch
from torch import Tensor

from boe_eval.models.denoiser import Denoiser

#: real tokens and padded junk tokens in the probe sequence
PROBE_LENGTH = 8
JUNK_LENGTH = 8

#: largest allowed change of a real position's logits, relative to the logits' standard deviation
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 2e-2}


def _relative_change(reference: Tensor, other: Tensor) -> float:
    """max |reference - other| / std(reference) over finite entries; inf when the finite patterns differ
    (NaN or inf appearing at real positions counts as not honouring the mask)."""
    reference, other = reference.double(), other.double()
    finite = torch.isfinite(reference)
    if not torch.equal(finite, torch.isfinite(other)) or not bool(finite.any()):
        return float("inf")
    scale = reference[finite].std().clamp_min(1e-12)
    return float((reference[finite] - other[finite]).abs().max() / scale)


@torch.no_grad()
def padding_sensitivity(denoiser: Denoiser, seed: int = 0) -> tuple[float, float]:
    """(change between two junk fills, change between unpadded and padded) of the real positions' logits,
    each relative to the logits' standard deviation."""
    generator = torch.Generator().manual_seed(seed)
    vocab = denoiser.vocab_size
    real = torch.randint(0, vocab, (1, PROBE_LENGTH), generator=generator)
    real[0, 1::2] = denoiser.mask_id  # a partly masked canvas, as during decoding
    fills = [torch.randint(0, vocab, (1, JUNK_LENGTH), generator=generator) for _ in range(2)]
    device = denoiser.device
    timestep = torch.full((1,), 0.5, device=device) if denoiser.time_conditioned else None

    def real_logits(junk: Tensor | None) -> Tensor:
        ids = real if junk is None else torch.cat([real, junk], dim=1)
        mask = torch.zeros_like(ids)
        mask[:, :PROBE_LENGTH] = 1
        logits = denoiser.logits(ids.to(device), attention_mask=mask.to(device), timestep=timestep)
        return logits[:, :PROBE_LENGTH].float().cpu()

    plain = real_logits(None)
    padded_a, padded_b = (real_logits(junk) for junk in fills)
    return _relative_change(padded_a, padded_b), _relative_change(plain, padded_a)


def honours_padding_mask(denoiser: Denoiser) -> bool:
    """True when the logits at real positions do not depend on right-padded junk behind the attention mask."""
    between_fills, against_unpadded = padding_sensitivity(denoiser)
    tolerance = TOLERANCE.get(denoiser.dtype, 5e-2)
    return between_fills <= tolerance and against_unpadded <= 10 * tolerance


__all__ = ["honours_padding_mask", "padding_sensitivity"]
