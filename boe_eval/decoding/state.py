"""What a sampler sees at one decoding step (`StepContext`) and what it answers (`StepDecision`).

All tensors cover only the *active* rows of the batch (sequences still being decoded in this block);
`rows` maps them back to batch indices, which is how stateful samplers keep per-sequence state.
Their columns are the step *window*: canvas columns [offset, W), where offset is the shortest prompt of the
batch (docs/design.md "Step window"); every position (gen_start, block_start, block_end) is counted in window
columns. `model` takes window-sized inputs and completes them with the frozen prompt prefix itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import torch
from torch import Tensor

from boe_eval.decoding.meter import MeteredDenoiser
from boe_eval.decoding.prediction import entropy_of_log_probs


@dataclass(eq=False)
class StepContext:
    x: Tensor  #: [b, L] current canvas (mask id at masked slots)
    attention_mask: Tensor  #: [b, L] 1 on real positions, 0 on right padding
    masked: Tensor  #: [b, L] bool, still-masked slots of the generation region
    eligible: Tensor  #: [b, L] bool, masked slots of the current block (may be written now)
    committed: Tensor  #: [b, L] bool, generated slots already written (candidates for remasking)
    gen_start: Tensor  #: [b] first generation position of each row (= prompt length)
    block_start: Tensor  #: [b] first position of the current block
    block_end: Tensor  #: [b] one past the last position of the current block
    logits: Tensor  #: [b, L, V] current-step prediction (forbidden ids at -inf)
    x0: Tensor  #: [b, L] proposed tokens: argmax, or a Gumbel-max sample at `temperature` (eligible slots)
    suppressed: Tensor  #: [b, L] bool, x0 is a suppressed id (EOS/EoT): -inf confidence
    budget: Tensor  #: [b] tokens the schedule asks to commit this step
    rows: Tensor  #: [b] batch indices
    model: MeteredDenoiser  #: metered denoiser for look-ahead calls
    generators: list[torch.Generator]  #: one RNG per row, independent of batch composition
    temperature: float
    block_index: int
    num_blocks: int
    block_step: int  #: step index inside the block (0-based)
    steps_per_block: int
    step: int  #: global step index (0-based) = block_index * steps_per_block + block_step for fixed schedules
    total_steps: int  #: T, the configured number of steps
    timestep: Tensor | None = None  #: [b] diffusion time t in (0, 1] for time-conditioned denoisers
    #: [b, L] the tokens the policy proposes (`Policy.propose_tokens`, called by the loop before `select`): `x0`
    #: unless the policy owns its proposal (ReMDM's temperature-1 / nucleus draws); a decision's default tokens
    proposal: Tensor | None = None
    offset: int = 0  #: canvas columns left of the window (column c of these tensors is canvas column offset + c)

    @cached_property
    def log_probs(self) -> Tensor:
        """log p_theta(. | x_t), untempered (LLaDA scores with the un-noised distribution), float32."""
        return torch.log_softmax(self.logits.float(), dim=-1)

    @cached_property
    def probs(self) -> Tensor:
        return self.log_probs.exp()

    @cached_property
    def confidence(self) -> Tensor:
        """p(x0) at every slot [b, L] (LLaDA `low_confidence`)."""
        return self.probs.gather(-1, self.x0.unsqueeze(-1)).squeeze(-1)

    @cached_property
    def entropy(self) -> Tensor:
        """H(p_i) in nats at every slot [b, L] (paper eq. 8 summand)."""
        return entropy_of_log_probs(self.log_probs)

    @cached_property
    def margin(self) -> Tensor:
        """p(1) - p(2), top-1 minus top-2 probability [b, L]."""
        top2 = self.probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])


@dataclass(eq=False)
class StepDecision:
    """Which slots to write this step. `tokens` defaults to `ctx.proposal` (= `ctx.x0` unless the policy owns its
    proposal); `remask` (ReMDM-style) lists
    committed slots to turn back into masks *after* the writes."""

    commit: Tensor  #: [b, L] bool
    tokens: Tensor | None = None  #: [b, L] long
    remask: Tensor | None = None  #: [b, L] bool
    #: per-row count of NaN/inf fallbacks this step (numerical safety, recorded in rows)
    fallbacks: Tensor | None = None


class Policy(Protocol):
    """What the decoding loop needs of a sampler (`boe_eval.samplers.base.Sampler` implements it; the
    contract is written out in `boe_eval/samplers/README.md`)."""

    name: str
    needs_grad: bool
    runs_all_planned_steps: bool

    def start(self, batch_size: int, width: int, device: torch.device) -> None: ...

    def block_budgets(self, n_masked: Tensor, steps_per_block: int) -> Tensor: ...

    def current_prediction(
        self, model: MeteredDenoiser, rows: Tensor, x: Tensor, attention_mask: Tensor, timestep: Tensor | None
    ) -> Tensor | None: ...

    def propose_tokens(self, ctx: StepContext) -> Tensor: ...

    def select(self, ctx: StepContext) -> StepDecision: ...
