"""The one decoding loop, its schedule, step state and compute meter."""

from boe_eval.decoding.loop import DecodeConfig, SequenceResult, cut_at_stop, generate, generate_batched
from boe_eval.decoding.meter import Meter, MeteredDenoiser
from boe_eval.errors import ConfigError
from boe_eval.decoding.schedule import uniform_budgets, validate_layout
from boe_eval.decoding.state import StepContext, StepDecision

__all__ = [
    "ConfigError",
    "DecodeConfig",
    "Meter",
    "MeteredDenoiser",
    "SequenceResult",
    "StepContext",
    "StepDecision",
    "cut_at_stop",
    "generate",
    "generate_batched",
    "uniform_budgets",
    "validate_layout",
]
