"""Unmasking policies. Importing this package registers every sampler module in it."""

import importlib
import pkgutil

from boe_eval.samplers.base import SAMPLERS, Sampler, SamplerConfig, build_sampler, register_sampler, top_k_mask

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SAMPLERS", "Sampler", "SamplerConfig", "build_sampler", "register_sampler", "top_k_mask"]
