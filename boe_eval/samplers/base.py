"""Sampler = an unmasking policy plugged into the one decoding loop (like a diffusers scheduler).

A sampler module defines a config dataclass and a `Sampler` subclass decorated with
`@register_sampler("name", ConfigClass)`. It holds its policy and nothing else: no loop, no I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from boe_eval.decoding.meter import MeteredDenoiser
from boe_eval.decoding.schedule import ConfigError, uniform_budgets
from boe_eval.decoding.state import StepContext, StepDecision

SAMPLERS: dict[str, tuple[type[Sampler], type]] = {}


def register_sampler(name: str, config_cls: type):
    """Class decorator: make a sampler available by name (Hydra `sampler=<name>`, lm-eval
    `--model_args sampler=<name>`)."""

    def wrap(cls):
        if name in SAMPLERS:
            raise RuntimeError(f"sampler {name!r} registered twice")
        cls.name = name
        SAMPLERS[name] = (cls, config_cls)
        return cls

    return wrap


@dataclass
class SamplerConfig:
    """Parameters shared by every sampler (none yet); subclasses add their own fields."""


class Sampler:
    name: ClassVar[str] = "base"
    #: True if the policy needs autograd (BoE): the loop then leaves grad mode to the sampler.
    needs_grad: ClassVar[bool] = False
    #: True if the policy remasks written tokens on its own schedule (ReMDM sigma-schedules): the loop then
    #: runs every planned step of a block even when the block has no masked slot left.
    runs_all_planned_steps: ClassVar[bool] = False

    def __init__(self, config: SamplerConfig | None = None) -> None:
        self.config = config if config is not None else self.default_config()

    @classmethod
    def default_config(cls) -> SamplerConfig:
        return SAMPLERS[cls.name][1]()

    # --- hooks called by the loop -----------------------------------------------------------
    def start(self, batch_size: int, width: int, device: torch.device) -> None:
        """Called once per `generate` call before the first step (reset per-sequence state)."""

    def current_prediction(
        self, model: MeteredDenoiser, rows: Tensor, x: Tensor, attention_mask: Tensor, timestep: Tensor | None
    ) -> Tensor | None:
        """Current-step logits [b, L, V] made by the policy itself through `model` (BoE fuses this forward with
        its surrogate forward on time-independent denoisers), a tensor the loop may modify; None (default):
        the loop makes its own no-grad forward."""
        return None

    def block_budgets(self, n_masked: Tensor, steps_per_block: int) -> Tensor:
        """Token budget of each step of a block, [b, S]. The loop runs at least S steps in the
        block and continues (budget = all remaining) while masked slots remain."""
        return uniform_budgets(n_masked, steps_per_block)

    def select(self, ctx: StepContext) -> StepDecision:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- reporting ---------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """All parameters, flattened into result rows as `sampler.<field>`."""
        return dataclasses.asdict(self.config)


def top_k_mask(scores: Tensor, ctx: StepContext, k: Tensor | None = None) -> Tensor:
    """Commit mask [b, L] of the `k` (default `ctx.budget`) highest-scoring eligible slots per row.

    Suppressed slots (EOS/EoT predictions) rank below every other eligible slot but above
    ineligible ones; ties break towards the leftmost slot (stable sort), so the choice never
    depends on batch composition.
    """
    k = ctx.budget if k is None else k
    key = scores.double().masked_fill(ctx.suppressed, torch.finfo(torch.float64).min)
    key = key.masked_fill(~ctx.eligible, float("-inf"))
    order = torch.argsort(key, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    k = torch.minimum(k.to(ranks.device), ctx.eligible.sum(1))
    return (ranks < k[:, None]) & ctx.eligible


def confidence_fallback(scores: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
    """Numerical guard for a policy's own scores (e.g. BoE's gated TIS, eq. 14-15, from a bf16/fp16
    backward): a row with a NaN or +-inf score at an eligible slot falls back to confidence p(x0)
    for this step. Returns (scores, fallbacks [b] long); pass `fallbacks` in `StepDecision`."""
    bad = (~torch.isfinite(scores) & ctx.eligible).any(1)
    if bool(bad.any()):
        scores = torch.where(bad[:, None], ctx.confidence.to(scores.dtype), scores)
    return scores, bad.long()


def build_sampler(name: str, **params: Any) -> Sampler:
    """Instantiate a registered sampler, validating its parameters."""
    import boe_eval.samplers  # noqa: F401  (registers every sampler module)

    if name not in SAMPLERS:
        raise ConfigError(f"sampler={name!r} is unknown: choose one of {', '.join(sorted(SAMPLERS))}")
    cls, config_cls = SAMPLERS[name]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise ConfigError(f"sampler {name!r} has no parameter {unknown[0]!r}: its parameters are {allowed}")
    config = config_cls(**params)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return cls(config)
