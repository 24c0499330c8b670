"""MDLM + FB, the forward-backward corrector baseline of ReMDM (Wang et al., arXiv 2503.00307, Table 1 and TABES
Table 4; docs/references.md §15, docs/samplers/fb.md).

As `kuleshov-group/remdm:diffusion.py::_ddpm_caching_update` runs it (`sampling.sampler=forward-backward`,
`scripts/fb.sh`): the ReMDM step of `remdm.py` with the remasking probability of the forward-backward corrector
(Campbell et al. 2022), unclipped,

    sigma_t = (alpha_s - alpha_t) / alpha_t      (1 when alpha_t = 0),

on the log-linear schedule alpha_t = 1 - t, t from 1 down to eps = 1e-5 in S steps. A written slot of the block is
masked again with probability sigma_t; a masked slot is unmasked with probability
(alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t) = 2 (t - s) / t, capped at 1 (the reference's categorical
never picks a mask weight that has gone negative), its token drawn from the nucleus (top-p 0.9) of p_x0. One
forward per step; after the S steps one argmax call fills slots still masked (the reference's noise removal).
"""

from __future__ import annotations

from dataclasses import dataclass

from boe_eval.samplers.base import register_sampler
from boe_eval.samplers.remdm import MdlmScheduleConfig, RemdmScheduleSampler, remdm_transition


@dataclass
class FbConfig(MdlmScheduleConfig):
    """No eta: the corrector's sigma is fixed by the schedule; `nucleus_p` 0.9 and `min_time` 1e-5 as `scripts/fb.sh`."""


def fb_sigma(alpha_t: float, alpha_s: float) -> float:
    """(alpha_s - alpha_t) / alpha_t, the forward-backward remasking probability (1 at alpha_t = 0)."""
    return (alpha_s - alpha_t) / alpha_t if alpha_t > 0 else 1.0


@register_sampler("fb", FbConfig)
class FbSampler(RemdmScheduleSampler):
    """MDLM with the forward-backward corrector: remask each written slot with probability (alpha_s - alpha_t) / alpha_t."""

    def transition(self, t: float, s: float) -> tuple[float, float]:
        alpha_t, alpha_s = 1 - t, 1 - s
        unmask, remask = remdm_transition(alpha_t, alpha_s, fb_sigma(alpha_t, alpha_s))
        return min(1.0, unmask), remask


__all__ = ["FbConfig", "FbSampler", "fb_sigma"]
