"""Load-time sanity check of a denoiser's output: refuse a model that would give silent garbage (issue 18).

A model whose remote code does not fit the running transformers can load without an error and still be wrong:
on transformers 5, Dream's rotary `inv_freq` (a non-persistent buffer) is left uninitialised unless the loader
recomputes it, which gives garbage or NaN logits. Before any decoding, `check_denoiser` runs a short probe batch
and raises a one-line `ConfigError` (model, transformers version, what to do) when

- any logit is NaN or infinite;
- the logits change under a no-op: the same batch run twice, or a row run alone instead of inside the batch
  (mean change beyond the dtype's rounding);
- a rotary module's inverse frequencies are not RoPE frequencies: every RoPE variant (default, linear, NTK,
  YaRN, Llama 3) gives finite, positive, non-increasing `inv_freq` with `inv_freq[0] <= 1` (θ_i = base^(-2i/d)
  and rescalings of it, Su et al. 2021 eq. 15); uninitialised memory does not.
"""

from __future__ import annotations

import torch
from torch import Tensor

from boe_eval.errors import ConfigError
from boe_eval.models.denoiser import Denoiser

PROBE_SHAPE = (2, 8)
#: a mean absolute change below this, relative to the logits' standard deviation, is rounding: loose enough for
#: GPU kernels that pick another algorithm for another batch size (and for bf16 through dozens of layers), while
#: garbage from uninitialised buffers moves the logits by O(1)
ROUNDING = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 5e-2}


def rotary_frequency_problems(model: torch.nn.Module) -> list[str]:
    """Names of the modules whose `inv_freq` buffer cannot be RoPE frequencies (see the module docstring)."""
    bad = []
    for name, module in model.named_modules():
        inv_freq = getattr(module, "inv_freq", None)
        if not isinstance(inv_freq, Tensor) or inv_freq.dim() != 1 or inv_freq.numel() == 0:
            continue
        freq = inv_freq.detach().double().cpu()
        plausible = (
            bool(torch.isfinite(freq).all())
            and bool((freq > 0).all())
            and bool((freq[1:] <= freq[:-1]).all())
            and float(freq[0]) <= 1.0 + 1e-6
        )
        if not plausible:
            bad.append(name or type(module).__name__)
    return bad


def _relative_change(reference: Tensor, other: Tensor) -> float:
    """mean |reference - other| / std(reference): the mean, not the max, so that a rare large rounding
    difference in a low-precision dtype over a large vocabulary does not count as a change."""
    reference, other = reference.double(), other.double()
    scale = reference.std().clamp_min(1e-12)
    return float((reference - other).abs().mean() / scale)


@torch.no_grad()
def logit_problems(denoiser: Denoiser, seed: int = 0) -> list[str]:
    """What is wrong with the denoiser's logits on a short probe batch (an empty list when nothing is)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, denoiser.vocab_size, PROBE_SHAPE, generator=generator)
    ids[:, 1::2] = denoiser.mask_id  # a partly masked canvas, as during decoding
    ids = ids.to(denoiser.device)
    timestep = torch.full((PROBE_SHAPE[0],), 0.5, device=denoiser.device) if denoiser.time_conditioned else None
    logits = denoiser.logits(ids, timestep=timestep).float()
    if not bool(torch.isfinite(logits).all()):
        share = 1.0 - float(torch.isfinite(logits).float().mean())
        return [f"{share:.0%} of the logits are NaN or infinite"]
    problems = []
    allowed = ROUNDING.get(denoiser.dtype, 2e-2)
    again = denoiser.logits(ids, timestep=timestep).float()
    if _relative_change(logits, again) > allowed:
        problems.append("the logits of one batch change when it is run again")
    alone = denoiser.logits(ids[:1], timestep=None if timestep is None else timestep[:1]).float()
    if _relative_change(logits[:1], alone) > allowed:
        problems.append("a row's logits change when it is run alone instead of in a batch")
    return problems


def check_denoiser(denoiser: Denoiser) -> None:
    """Raise a one-line ConfigError when the loaded model fails the sanity check (see the module docstring)."""
    from boe_eval.models.compat import transformers_version

    problems = logit_problems(denoiser)
    bad_rotary = rotary_frequency_problems(denoiser.model)
    if bad_rotary:
        problems.append(f"rotary frequencies are not initialised ({bad_rotary[0]}.inv_freq)")
    if problems:
        raise ConfigError(
            f"model {denoiser.name!r} fails the load-time sanity check on transformers {transformers_version()}: "
            f"{'; '.join(problems)}. Its code does not work with this transformers version: install the version "
            "its model card names (e.g. pip install 'transformers>=4.56,<5') or report the model to boe-eval"
        )


__all__ = ["check_denoiser", "logit_problems", "rotary_frequency_problems"]
