"""Denoisers: one wrapper per architecture family behind the `Denoiser` contract."""

from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import LOADERS, load_denoiser, read_config

__all__ = ["LOADERS", "Denoiser", "load_denoiser", "read_config"]
