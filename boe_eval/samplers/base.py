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
from boe_eval.errors import ConfigError
from boe_eval.decoding.schedule import uniform_budgets
from boe_eval.decoding.ranking import confidence_fallback, top_k_mask  # noqa: F401  (re-exported for policies)
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import KnobRule

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
    #: True if the policy needs the diffusion time t of a time-conditioned denoiser (the MDLM sigma-schedules):
    #: the pre-flight then refuses models that are not time-conditioned, before any model loads.
    needs_time_conditioning: ClassVar[bool] = False
    #: True if the policy calls `model.forward_masked` (a boolean [B, 1, Q, K] attention mask with position ids, WINO's
    #: shadow-block verification): the pre-flight then refuses models without `supports_4d_mask`, before any loads.
    needs_4d_mask: ClassVar[bool] = False
    #: its cost per step and sweep knob (`boe_eval.samplers.cost`); every registered sampler declares one
    knob: ClassVar[KnobRule | None] = None

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

    def propose_tokens(self, ctx: StepContext) -> Tensor:
        """The tokens this policy would write at each slot [b, L], drawn before `select` (which reads them as
        `ctx.proposal`; they are also a decision's default `tokens`). Default: the loop's proposal `ctx.x0`
        (argmax, or Gumbel-max at the run's temperature). A policy that owns its proposal (ReMDM samples at
        temperature 1 or from a nucleus) overrides this, drawing through `decoding.prediction.gumbel_max_tokens`
        with the row generators in `ctx.generators`."""
        return ctx.x0

    def select(self, ctx: StepContext) -> StepDecision:  # pragma: no cover - abstract
        raise NotImplementedError

    def degeneracy(self, ctx: StepContext) -> tuple[Tensor, str] | None:
        """Rows [b] bool whose decision this step equals confidence's top-b_t *by construction*, with the reason
        (the decision diagnostics print it, `boe_eval.decoding.diagnostics`); None: no known cause."""
        return None

    # --- reporting ---------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """All parameters, flattened into result rows as `sampler.<field>`."""
        return dataclasses.asdict(self.config)


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
