"""The one decoding loop (docs/design.md "Decoding loop"; docs/references.md §1 is the reference).

Canvas: each row is [prompt, MASK x gen_length] right-padded to the batch width with a real
attention mask, so a sequence decodes to the same tokens whatever else is in its batch. Blocks are
decoded left to right (semi-autoregressive when block_length < gen_length); inside a block the
sampler picks which masked slots to write at each step, the loop writes them (argmax at T=0,
Gumbel-max at T>0), meters every model call and handles stopping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boe_eval.decoding.diagnostics import DecisionDiagnostics
from boe_eval.decoding.meter import Meter, MeteredDenoiser
from boe_eval.decoding.schedule import ConfigError, validate_layout
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.models.denoiser import Denoiser

if TYPE_CHECKING:
    from boe_eval.samplers.base import Sampler


@dataclass
class DecodeConfig:
    gen_length: int = 64
    steps: int = 64
    block_length: int | None = None  #: None or 0 = gen_length (pure diffusion)
    temperature: float = 0.0
    until: tuple[str, ...] = ()  #: stop strings: the text is cut at the first one
    #: stop decoding a sequence once a stop string (or EOS) is decoded and every slot before it is
    #: unmasked (EB-Sampler "generate_until" protocol): NFE is then counted to the stop.
    early_stop: bool = False
    stop_on_eos: bool = True
    record_trajectory: bool = False
    backward_cost: float = 2.0

    def validate(self) -> tuple[int, int, int]:
        if self.temperature is None or self.temperature < 0:
            raise ConfigError(f"temperature={self.temperature!r} is invalid: it must be >= 0 (0 = greedy)")
        return validate_layout(self.gen_length, self.block_length, self.steps)


@dataclass
class SequenceResult:
    """One decoded sequence with its metered compute."""

    text: str  #: decoded generation, cut at EOS and at the first stop string
    raw_text: str  #: decoded generation before cutting at stop strings
    tokens: list[int]  #: generation region (mask id where a slot was never written)
    prompt_length: int
    stopped_early: bool
    nfe_to_stop: int | None  #: NFE when the stop condition was first met (None: never met)
    nfe: int
    forwards: int
    backwards: int
    forward_equivalents: float
    tokens_processed: int
    wall_time_s: float
    fallbacks: int = 0
    trajectory: list[dict] | None = None
    #: decision diagnostics (agreement with confidence, remasked writes; `boe_eval.decoding.diagnostics`)
    decisions: dict = field(default_factory=dict)

    def compute(self) -> dict:
        return {
            "nfe": self.nfe,
            "nfe_to_stop": self.nfe_to_stop,
            "forwards": self.forwards,
            "backwards": self.backwards,
            "forward_equivalents": self.forward_equivalents,
            "tokens_processed": self.tokens_processed,
            "wall_time_s": self.wall_time_s,
            "fallbacks": self.fallbacks,
            **self.decisions,
        }


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """Text before the earliest occurrence of any stop string."""
    cut = len(text)
    for stop in until:
        if stop:
            idx = text.find(stop)
            if idx != -1:
                cut = min(cut, idx)
    return text[:cut]


def generation_text(
    denoiser: Denoiser, tokens: Sequence[int], stop_on_eos: bool = True, max_tokens: int | None = None
) -> str:
    """Decode a generation region: the tokens before the first still-masked slot (and before the
    first EOS), at most `max_tokens` of them, special tokens skipped."""
    kept: list[int] = []
    for token in tokens[:max_tokens]:
        if token == denoiser.mask_id or (stop_on_eos and token == denoiser.eos_id):
            break
        kept.append(token)
    return denoiser.tokenizer.decode(kept, skip_special_tokens=True)


@dataclass
class _Canvas:
    x: Tensor
    attention_mask: Tensor
    is_masked: Tensor
    gen_start: Tensor
    gen_region: Tensor
    positions: Tensor = field(repr=False)


def _build_canvas(denoiser: Denoiser, prompts: Sequence[Sequence[int]], gen_length: int) -> _Canvas:
    device = denoiser.device
    lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    width = int(lengths.max()) + gen_length
    batch = len(prompts)
    x = torch.full((batch, width), denoiser.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        n = len(prompt)
        x[i, :n] = torch.as_tensor(list(prompt), dtype=torch.long)
        x[i, n : n + gen_length] = denoiser.mask_id
        attention_mask[i, : n + gen_length] = 1
    positions = torch.arange(width)
    gen_region = (positions[None] >= lengths[:, None]) & (positions[None] < lengths[:, None] + gen_length)
    return _Canvas(
        x=x.to(device),
        attention_mask=attention_mask.to(device),
        is_masked=gen_region.clone().to(device),
        gen_start=lengths.to(device),
        gen_region=gen_region.to(device),
        positions=positions.to(device),
    )


def _propose_tokens(logits: Tensor, eligible: Tensor, temperature: float, generators: list[torch.Generator]) -> Tensor:
    """x0: argmax everywhere; at eligible slots a Gumbel-max sample at `temperature` when T > 0
    (argmax of logits/T + Gumbel noise in float64, as LLaDA's `add_gumbel_noise`)."""
    x0 = logits.argmax(-1)
    if temperature > 0:
        for j, g in enumerate(generators):
            idx = eligible[j].nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            rows = logits[j, idx].double()
            u = torch.rand(rows.shape, generator=g, device=g.device, dtype=torch.float64).to(rows.device)
            gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
            x0[j, idx] = (rows / temperature + gumbel).argmax(-1)
    return x0


def _unusable_slots(logits: Tensor, eligible: Tensor) -> Tensor:
    """Eligible slots [b, L] whose prediction cannot give probabilities: a NaN or +inf logit, or no
    finite logit at all (bf16/fp16 overflow). -inf alone is legal (forbidden ids)."""
    normaliser = torch.logsumexp(logits, dim=-1)
    return ~torch.isfinite(normaliser) & eligible


def _discard_predictions(logits: Tensor, slots: Tensor, forbidden: Tensor) -> Tensor:
    """Replace the prediction at `slots` by the uniform distribution over allowed tokens, so those
    slots get the lowest confidence and are written last (the numerical fallback)."""
    uniform = torch.zeros(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    uniform[forbidden] = float("-inf")
    return torch.where(slots.unsqueeze(-1), uniform, logits)


def _check_decision(sampler: Sampler, decision: StepDecision, ctx: StepContext) -> None:
    if decision.commit.shape != ctx.eligible.shape:
        raise RuntimeError(f"sampler {sampler.name!r} returned a commit mask of shape {tuple(decision.commit.shape)}")
    if (decision.commit & ~ctx.eligible).any():
        raise RuntimeError(f"sampler {sampler.name!r} tried to write a slot that is not masked in the current block")
    stalled = (decision.commit.sum(1) == 0) & (ctx.budget > 0)
    if stalled.any():
        raise RuntimeError(f"sampler {sampler.name!r} committed nothing although the step budget is positive")
    if decision.remask is not None and (decision.remask & ~(ctx.committed | decision.commit)).any():
        raise RuntimeError(f"sampler {sampler.name!r} tried to remask a slot that is not a generated token")


def _confidence_fallback(
    decision: StepDecision, ctx: StepContext, rows: Tensor
) -> tuple[StepDecision, Tensor]:
    """For the rows in `rows` [b] bool, replace the sampler's decision by confidence order (top
    `budget` by p(x0), the proposed tokens, no remasking); each such row counts one fallback."""
    from boe_eval.samplers.base import top_k_mask

    keep = ~rows[:, None]
    commit = torch.where(keep, decision.commit, top_k_mask(ctx.confidence, ctx))
    tokens = None if decision.tokens is None else torch.where(keep, decision.tokens, ctx.x0)
    remask = None if decision.remask is None else decision.remask & keep
    previous = decision.fallbacks if decision.fallbacks is not None else torch.zeros_like(rows, dtype=torch.long)
    counts = torch.where(rows.to(previous.device), torch.ones_like(previous), previous.long())
    return StepDecision(commit=commit, tokens=tokens, remask=remask, fallbacks=counts), counts


class _StopWatcher:
    """Detects, per row, the first step at which the unmasked prefix of the generation contains EOS
    or a stop string (the EB-Sampler generate-until condition)."""

    def __init__(self, denoiser: Denoiser, config: DecodeConfig, batch: int) -> None:
        self.tokenizer = denoiser.tokenizer
        self.eos_ids = {denoiser.eos_id} if (config.stop_on_eos and denoiser.eos_id is not None) else set()
        self.until = tuple(s for s in config.until if s)
        self.gen_length = config.gen_length
        self.met = [False] * batch
        self.nfe_at_stop: list[int | None] = [None] * batch

    def update(self, canvas: _Canvas, rows: Tensor, meter: Meter) -> None:
        if not self.eos_ids and not self.until:
            return
        for row in rows.tolist():
            if self.met[row]:
                continue
            start = int(canvas.gen_start[row])
            masked = canvas.is_masked[row, start : start + self.gen_length]
            first_mask = int(masked.nonzero()[0]) if masked.any() else self.gen_length
            prefix = canvas.x[row, start : start + first_mask].tolist()
            hit = any(t in self.eos_ids for t in prefix)
            if not hit and self.until:
                text = self.tokenizer.decode(prefix, skip_special_tokens=True)
                hit = any(s in text for s in self.until)
            if hit:
                self.met[row] = True
                self.nfe_at_stop[row] = int(meter.nfe[row])


def generate(
    denoiser: Denoiser,
    prompts: Sequence[Sequence[int]],
    sampler: Sampler,
    config: DecodeConfig,
    seeds: Sequence[int] | None = None,
) -> list[SequenceResult]:
    """Decode one batch of prompts (token id lists). `seeds[i]` seeds row i's own RNG, so sampled
    tokens and random orders do not depend on which other prompts share the batch."""
    block_length, num_blocks, steps_per_block = config.validate()
    batch = len(prompts)
    if batch == 0:
        return []
    if not denoiser.honours_padding_mask and len({len(p) for p in prompts}) > 1:
        raise ValueError(
            f"{denoiser.name} ignores the padding mask: batch only prompts of equal length "
            "(generate_batched does this)"
        )
    seeds = list(seeds) if seeds is not None else list(range(batch))
    longest = max(len(p) for p in prompts) + config.gen_length
    if denoiser.max_length is not None and longest > denoiser.max_length:
        raise ConfigError(
            f"prompt ({longest - config.gen_length} tokens) + gen_length ({config.gen_length}) = {longest} "
            f"exceeds the {denoiser.max_length} positions {denoiser.name} accepts: use a shorter gen_length or another model"
        )
    device = denoiser.device
    canvas = _build_canvas(denoiser, prompts, config.gen_length)
    meter = Meter(batch, backward_cost=config.backward_cost)
    model = MeteredDenoiser(denoiser, meter)
    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    forbidden = torch.tensor(denoiser.forbidden_ids, dtype=torch.long, device=device)
    suppress = torch.tensor(denoiser.suppress_ids, dtype=torch.long, device=device)
    watcher = _StopWatcher(denoiser, config, batch)
    stopped = torch.zeros(batch, dtype=torch.bool, device=device)
    fallbacks = torch.zeros(batch, dtype=torch.long)
    trajectories: list[list[dict]] = [[] for _ in range(batch)]
    diagnostics = DecisionDiagnostics(batch)
    sampler.start(batch, canvas.x.shape[1], device)
    positions = canvas.positions[None]
    global_step = 0

    for block_index in range(num_blocks):
        block_start = canvas.gen_start + block_index * block_length
        block_end = block_start + block_length
        in_block = (positions >= block_start[:, None]) & (positions < block_end[:, None])
        budgets = sampler.block_budgets((canvas.is_masked & in_block).sum(1), steps_per_block)
        planned = budgets.shape[1]
        max_iterations = planned + block_length + 1
        block_step = 0
        while True:
            eligible_all = canvas.is_masked & in_block
            unfinished = eligible_all.any(1)
            if sampler.runs_all_planned_steps and block_step < planned:
                unfinished = torch.ones_like(unfinished)  # a remasking policy may mask written slots again
            active = ~stopped & unfinished
            if not bool(active.any()):
                break
            if block_step >= max_iterations:
                raise RuntimeError(f"sampler {sampler.name!r} did not finish block {block_index} in {max_iterations} steps")
            rows = active.nonzero().squeeze(1)
            xa = canvas.x[rows]
            attn = canvas.attention_mask[rows]
            eligible = eligible_all[rows]
            timestep = None
            if denoiser.time_conditioned:
                frac = canvas.is_masked[rows].sum(1).float() / config.gen_length
                timestep = frac.clamp(min=1e-5)
            # a policy may make the current-step forward itself (BoE fuses it with its surrogate forward)
            logits = sampler.current_prediction(model, rows, xa, attn, timestep)
            with torch.no_grad():
                if logits is None:
                    logits = model.forward(rows, xa, attention_mask=attn, timestep=timestep)
                logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
                logits[..., forbidden] = float("-inf")
                # NaN/inf guard (issue 8): rows with an unusable prediction fall back to confidence order
                unusable = _unusable_slots(logits, eligible)
                numeric_fallback = unusable.any(1)
                if bool(numeric_fallback.any()):
                    logits = _discard_predictions(logits, unusable, forbidden)
                row_generators = [generators[i] for i in rows.tolist()]
                x0 = _propose_tokens(logits, eligible, config.temperature, row_generators)
            if block_step < planned:
                budget = budgets[rows.to(budgets.device), block_step].to(device)
            else:
                budget = eligible.sum(1)
            budget = torch.minimum(budget, eligible.sum(1))
            ctx = StepContext(
                x=xa,
                attention_mask=attn,
                masked=canvas.is_masked[rows],
                eligible=eligible,
                committed=canvas.gen_region[rows] & ~canvas.is_masked[rows],
                gen_start=canvas.gen_start[rows],
                block_start=block_start[rows],
                block_end=block_end[rows],
                logits=logits,
                x0=x0,
                suppressed=torch.isin(x0, suppress) if suppress.numel() else torch.zeros_like(eligible),
                budget=budget,
                rows=rows,
                model=model,
                generators=row_generators,
                temperature=config.temperature,
                block_index=block_index,
                num_blocks=num_blocks,
                block_step=block_step,
                steps_per_block=steps_per_block,
                step=global_step,
                total_steps=config.steps,
                timestep=timestep,
            )
            if sampler.needs_grad:
                decision = sampler.select(ctx)
            else:
                with torch.no_grad():
                    decision = sampler.select(ctx)
            step_fallbacks = decision.fallbacks
            if bool(numeric_fallback.any()):
                decision, step_fallbacks = _confidence_fallback(decision, ctx, numeric_fallback)
            _check_decision(sampler, decision, ctx)
            diagnostics.observe(sampler, ctx, decision)  # what confidence would commit (observes only)
            tokens = decision.tokens if decision.tokens is not None else x0
            if config.record_trajectory:
                masked_entropy = (ctx.entropy * ctx.masked).sum(1)
                for j, row in enumerate(rows.tolist()):
                    start = int(canvas.gen_start[row])
                    trajectories[row].append(
                        {
                            "step": global_step,
                            "nfe": int(meter.nfe[row]),
                            "masked_entropy": float(masked_entropy[j]),
                            "committed": (decision.commit[j].nonzero().squeeze(1) - start).tolist(),
                        }
                    )
            new_x = torch.where(decision.commit, tokens, xa)
            new_masked = canvas.is_masked[rows] & ~decision.commit
            if decision.remask is not None:
                new_x = torch.where(decision.remask, torch.full_like(new_x, denoiser.mask_id), new_x)
                new_masked = new_masked | decision.remask
            canvas.x[rows] = new_x
            canvas.is_masked[rows] = new_masked
            if step_fallbacks is not None:
                fallbacks[rows.cpu()] += step_fallbacks.cpu().long()
            watcher.update(canvas, rows, meter)
            if config.early_stop:
                stopped[rows] = torch.tensor([watcher.met[r] for r in rows.tolist()], device=device)
            block_step += 1
            global_step += 1

    results = []
    for i in range(batch):
        start = int(canvas.gen_start[i])
        gen = canvas.x[i, start : start + config.gen_length].tolist()
        masked = canvas.is_masked[i, start : start + config.gen_length].tolist()
        gen_shown = [denoiser.mask_id if m else t for t, m in zip(gen, masked)]
        raw = generation_text(denoiser, gen_shown, stop_on_eos=config.stop_on_eos)
        results.append(
            SequenceResult(
                text=cut_at_stop(raw, config.until),
                raw_text=raw,
                tokens=gen_shown,
                prompt_length=start,
                stopped_early=bool(stopped[i]),
                nfe_to_stop=watcher.nfe_at_stop[i],
                fallbacks=int(fallbacks[i]),
                trajectory=trajectories[i] if config.record_trajectory else None,
                decisions=diagnostics.row(i),
                **meter.row(i),
            )
        )
    return results


def generate_batched(
    denoiser: Denoiser,
    prompts: Sequence[Sequence[int]],
    sampler: Sampler,
    config: DecodeConfig,
    seeds: Sequence[int],
    batch_size: int = 1,
    progress: bool = True,
    desc: str = "decoding",
) -> list[SequenceResult]:
    """Decode many prompts in batches, results in input order. Models that ignore the padding
    mask get batches of equal-length prompts only (results never depend on batch composition)."""
    if batch_size <= 0:
        raise ConfigError(f"batch_size={batch_size!r} is invalid: it must be a positive integer")
    order = list(range(len(prompts)))
    if not denoiser.honours_padding_mask:
        order.sort(key=lambda i: (len(prompts[i]), i))
    batches: list[list[int]] = []
    for i in order:
        if (
            batches
            and len(batches[-1]) < batch_size
            and (denoiser.honours_padding_mask or len(prompts[batches[-1][0]]) == len(prompts[i]))
        ):
            batches[-1].append(i)
        else:
            batches.append([i])
    results: list[SequenceResult | None] = [None] * len(prompts)
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, leave=False)
    for idx in batches:
        out = generate(denoiser, [prompts[i] for i in idx], sampler, config, [seeds[i] for i in idx])
        for i, res in zip(idx, out):
            results[i] = res
        bar.update(len(idx))
    bar.close()
    return results  # type: ignore[return-value]


__all__ = ["DecodeConfig", "SequenceResult", "cut_at_stop", "generate", "generate_batched", "generation_text"]
