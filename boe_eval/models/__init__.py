"""Denoisers: one wrapper per architecture family behind the `Denoiser` contract.

Importing this package registers the loaders of the remote-code families in `LOADERS` (keyed by
`config.model_type`, lower case): LLaDA ("llada"), LLaDA2 ("llada2_moe"), Dream ("dream"), MDLM ("mdlm"), SEDD
(absorbing; "sedd", recognised by its config keys) and
DiffusionGemma ("diffusion_gemma", transformers' own class); any other model type is loaded as an
`AutoModelForMaskedLM`. LLaDA-MoE, whose config says "llada" too, is recognised by its `architectures` entry
(`LLaDAMoEModelLM`, `ARCHITECTURE_LOADERS`).
"""

from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import LOADERS, load_denoiser, read_config
from boe_eval.models.llada import LLaDADenoiser  # noqa: E402  (registers LOADERS["llada"])
from boe_eval.models.dream import DreamDenoiser  # noqa: E402  (registers LOADERS["dream"])
from boe_eval.models.mdlm import MDLMDenoiser  # noqa: E402  (registers LOADERS["mdlm"])
from boe_eval.models.llada2 import LLaDA2Denoiser  # noqa: E402  (registers LOADERS["llada2_moe"])
from boe_eval.models.llada_moe import LLaDAMoEDenoiser  # noqa: E402  (registers architecture LLaDAMoEModelLM)
from boe_eval.models.diffusion_gemma import DiffusionGemmaDenoiser  # noqa: E402  (registers "diffusion_gemma")
from boe_eval.models.sedd import SEDDDenoiser  # noqa: E402  (registers LOADERS["sedd"])
from boe_eval.models.padding_probe import honours_padding_mask

__all__ = [
    "LOADERS",
    "Denoiser",
    "DiffusionGemmaDenoiser",
    "DreamDenoiser",
    "LLaDA2Denoiser",
    "LLaDADenoiser",
    "LLaDAMoEDenoiser",
    "MDLMDenoiser",
    "SEDDDenoiser",
    "honours_padding_mask",
    "load_denoiser",
    "read_config",
]
