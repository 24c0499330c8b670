"""The one decoding loop (docs/design.md "Decoding loop"; docs/references.md §1 is the reference).

Like a diffusers pipeline: build the canvas, then for each block and step make one metered
prediction, let the sampler decide which masked slots to write (and which to re-mask), check the
decision against the rules, write it, and watch for a stop. Everything else lives in its own module:
the canvas (`canvas`), the prediction step (`prediction`), the decision rules (`rules`), stopping
(`stopping`), the trajectory (`trajectory`), the meter and the decision diagnostics. The loop knows
samplers only through the `Policy` protocol (`decoding.state`) it is handed; it imports none of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
import torch
from torch import Tensor
from tqdm.auto import tqdm

from boe_eval.decoding.canvas import Canvas, build_canvas, canonical_width, check_prompts
from boe_eval.decoding.diagnostics import DecisionDiagnostics
from boe_eval.decoding.meter import Meter, MeteredDenoiser, StepWindow
from boe_eval.decoding.prediction import current_timestep, prepare_prediction
from boe_eval.decoding.rules import check_decision, confidence_for_rows
from boe_eval.errors import ConfigError
from boe_eval.decoding.schedule import validate_layout
from boe_eval.decoding.state import Policy, StepContext, StepDecision
from boe_eval.decoding.stopping import StopWatcher, cut_at_stop, generation_text
from boe_eval.decoding.trajectory import TrajectoryRecorder
from boe_eval.models.denoiser import Denoiser


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
    #: step window (docs/design.md "Step window"): steps see the canvas columns from the shortest prompt's end
    #: on, and the model's output head runs there only; False = the whole canvas (same tokens, more memory)
    logits_window: bool = True
    #: canonical canvas widths (`decoding.canvas`): each row's width rounded up to this multiple, batches of equal
    #: width only, so a row has the same shapes alone and in a batch. None = LOW_PRECISION_MULTIPLE for 16-bit
    #: float models (where a wider canvas moves logits by a rounding step), 0 (off) otherwise.
    canvas_multiple: int | None = None
    #: Fast-dLLM KV cache (docs/design.md "KV caches", `boe_eval.models.kv_cache`): "none", "prefix" or "dual"
    cache: str = "none"

    def validate(self) -> tuple[int, int, int]:
        check_temperature(self.temperature)
        return validate_layout(self.gen_length, self.block_length, self.steps)


#: the canvas multiple of bf16/fp16 models: at most 31 padded columns per row, few distinct widths per task
LOW_PRECISION_MULTIPLE = 32


def canvas_multiple(denoiser: Denoiser, config: DecodeConfig) -> int:
    """The canvas width multiple in force (see `DecodeConfig.canvas_multiple`); 0 for a model that ignores the
    padding mask, which must never see padding."""
    if not denoiser.honours_padding_mask:
        return 0
    if config.canvas_multiple is not None:
        if config.canvas_multiple < 0:
            raise ConfigError(f"canvas_multiple={config.canvas_multiple!r} is invalid: it must be >= 0 (0 = off)")
        return int(config.canvas_multiple)
    return LOW_PRECISION_MULTIPLE if denoiser.dtype in (torch.bfloat16, torch.float16) else 0


def check_temperature(temperature: float) -> None:
    """The one rule for a sampling temperature (the harness's run spec and lm-eval's model_args use it)."""
    if temperature is None or not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature={temperature!r} is invalid: it must be >= 0 (0 = greedy)")


def check_batch_size(batch_size: int) -> None:
    """The one rule for a batch size (sequences decoded together)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"batch_size={batch_size!r} is invalid: it must be a positive integer")


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
    forward_flops: float | None = None  #: analytic forward FLOPs (boe_eval.models.flops); None: not countable
    flops: float | None = None  #: forward FLOPs + backward_cost x those of the differentiated forwards
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
            "forward_flops": self.forward_flops,
            "flops": self.flops,
            "fallbacks": self.fallbacks,
            **self.decisions,
        }


@dataclass
class _Run:
    """Everything one `generate` call holds while it decodes."""

    denoiser: Denoiser
    sampler: Policy
    config: DecodeConfig
    canvas: Canvas
    meter: Meter
    model: MeteredDenoiser
    generators: list[torch.Generator]
    watcher: StopWatcher
    trajectory: TrajectoryRecorder
    diagnostics: DecisionDiagnostics
    stopped: Tensor
    fallbacks: Tensor
    forbidden: Tensor
    suppress: Tensor
    num_blocks: int
    steps_per_block: int
    offset: int = 0  #: canvas columns left of the step window (the frozen prompt prefix shared by every row)
    step: int = 0


def generate(
    denoiser: Denoiser,
    prompts: Sequence[Sequence[int]],
    sampler: Policy,
    config: DecodeConfig,
    seeds: Sequence[int] | None = None,
) -> list[SequenceResult]:
    """Decode one batch of prompts (token id lists). `seeds[i]` seeds row i's own RNG, so sampled
    tokens and random orders do not depend on which other prompts share the batch."""
    block_length, num_blocks, steps_per_block = config.validate()
    if not prompts:
        return []
    check_prompts(denoiser, prompts, config.gen_length)
    from boe_eval.models.kv_cache import cache_refusal

    if refusal := cache_refusal(sampler, config.cache):
        raise ConfigError(refusal)
    run = _start(denoiser, prompts, sampler, config, seeds, num_blocks, steps_per_block)
    for block_index in range(num_blocks):
        _decode_block(run, block_index, block_length)
    return [_result(run, i) for i in range(len(prompts))]


def _start(denoiser, prompts, sampler, config, seeds, num_blocks, steps_per_block) -> _Run:
    batch, device = len(prompts), denoiser.device
    seeds = list(seeds) if seeds is not None else list(range(batch))
    canvas = build_canvas(denoiser, prompts, config.gen_length, canvas_multiple(denoiser, config))
    meter = Meter(batch, backward_cost=config.backward_cost)
    offset = int(canvas.gen_start.min()) if config.logits_window else 0
    window = StepWindow(canvas.x[:, :offset].clone(), canvas.attention_mask[:, :offset].clone(), canvas.x.shape[1],
                        row_starts=canvas.gen_start.clone())
    run = _Run(
        denoiser=denoiser,
        sampler=sampler,
        config=config,
        canvas=canvas,
        meter=meter,
        model=MeteredDenoiser(denoiser, meter, window, cache=config.cache),
        generators=[torch.Generator(device=device).manual_seed(int(s)) for s in seeds],
        watcher=StopWatcher(denoiser, config.until, config.stop_on_eos, config.gen_length, batch),
        trajectory=TrajectoryRecorder(batch, config.record_trajectory),
        diagnostics=DecisionDiagnostics(batch),
        stopped=torch.zeros(batch, dtype=torch.bool, device=device),
        fallbacks=torch.zeros(batch, dtype=torch.long),
        forbidden=torch.tensor(denoiser.forbidden_ids, dtype=torch.long, device=device),
        suppress=torch.tensor(denoiser.suppress_ids, dtype=torch.long, device=device),
        num_blocks=num_blocks,
        steps_per_block=steps_per_block,
        offset=offset,
    )
    sampler.start(batch, canvas.x.shape[1] - offset, device)
    return run


def _decode_block(run: _Run, block_index: int, block_length: int) -> None:
    """Steps until every row has written its block (or stopped). A policy that remasks on its own
    schedule (`runs_all_planned_steps`) runs every planned step even once the block is full."""
    canvas, sampler = run.canvas, run.sampler
    block_start, block_end, in_block = canvas.block(block_index, block_length)
    run.model.start_block(block_start, block_end)  # a KV cache refreshes at the block's first forward
    budgets = sampler.block_budgets((canvas.is_masked & in_block).sum(1), run.steps_per_block)
    planned = budgets.shape[1]
    max_iterations = planned + block_length + 1
    for block_step in range(max_iterations + 1):
        unfinished = (canvas.is_masked & in_block).any(1)
        if sampler.runs_all_planned_steps and block_step < planned:
            unfinished = torch.ones_like(unfinished)
        active = ~run.stopped & unfinished
        if not bool(active.any()):
            return
        if block_step >= max_iterations:
            raise RuntimeError(f"sampler {sampler.name!r} did not finish block {block_index} in {max_iterations} steps")
        rows = active.nonzero().squeeze(1)
        eligible = (canvas.is_masked & in_block)[rows]
        if block_step < planned:
            budget = budgets[rows.to(budgets.device), block_step].to(eligible.device)
        else:
            budget = eligible.sum(1)
        _step(run, rows, eligible, torch.minimum(budget, eligible.sum(1)), block_index, block_step, block_start, block_end)
        run.step += 1


def _step(run: _Run, rows: Tensor, eligible: Tensor, budget: Tensor, block_index: int, block_step: int,
          block_start: Tensor, block_end: Tensor) -> None:
    """One step: predict, let the sampler decide, check, observe, write, watch for a stop. The step sees the
    window [offset, W) of the canvas: every tensor of its context, positions shifted by `offset`."""
    canvas, sampler, config, w = run.canvas, run.sampler, run.config, run.offset
    xa, attn = canvas.x[rows, w:], canvas.attention_mask[rows, w:]
    eligible = eligible[:, w:]
    timestep = None
    if run.denoiser.time_conditioned:
        timestep = current_timestep(canvas.is_masked[rows], config.gen_length)
    # a policy may make the current-step forward itself (BoE fuses it with its surrogate forward)
    logits = sampler.current_prediction(run.model, rows, xa, attn, timestep)
    if logits is None:
        with torch.no_grad():
            logits = run.model.forward(rows, xa, attention_mask=attn, timestep=timestep)
    row_generators = [run.generators[i] for i in rows.tolist()]
    prediction = prepare_prediction(logits, eligible, run.forbidden, config.temperature, row_generators)
    ctx = StepContext(
        x=xa, attention_mask=attn, masked=canvas.is_masked[rows, w:], eligible=eligible,
        committed=(canvas.gen_region[rows] & ~canvas.is_masked[rows])[:, w:], gen_start=canvas.gen_start[rows] - w,
        block_start=block_start[rows] - w, block_end=block_end[rows] - w, logits=prediction.logits, x0=prediction.x0,
        suppressed=torch.isin(prediction.x0, run.suppress) if run.suppress.numel() else torch.zeros_like(eligible),
        budget=budget, rows=rows, model=run.model, generators=row_generators, temperature=config.temperature,
        block_index=block_index, num_blocks=run.num_blocks, block_step=block_step,
        steps_per_block=run.steps_per_block, step=run.step, total_steps=config.steps, timestep=timestep, offset=w,
    )
    with torch.no_grad():  # the policy's own token proposal (default: x0), drawn before its decision
        ctx.proposal = sampler.propose_tokens(ctx)
    decision = _decide(sampler, ctx, prediction.unusable)
    run.diagnostics.observe(sampler, ctx, decision)  # what confidence would commit (observes only)
    tokens = decision.tokens if decision.tokens is not None else ctx.proposal
    run.trajectory.record(ctx, decision, run.meter)
    canvas.write(rows, decision.commit, tokens, decision.remask, run.denoiser.mask_id, offset=w)
    if decision.fallbacks is not None:
        run.fallbacks[rows.cpu()] += decision.fallbacks.cpu().long()
    run.watcher.update(canvas, rows, run.meter)
    if config.early_stop:
        run.stopped[rows] = torch.tensor([run.watcher.met[r] for r in rows.tolist()], device=run.stopped.device)


def _decide(sampler: Policy, ctx: StepContext, unusable: Tensor) -> StepDecision:
    """The sampler's decision (under no_grad unless it needs autograd), with confidence order for
    rows whose prediction was unusable, checked against the rules."""
    if sampler.needs_grad:
        decision = sampler.select(ctx)
    else:
        with torch.no_grad():
            decision = sampler.select(ctx)
    if bool(unusable.any()):
        decision, _ = confidence_for_rows(decision, ctx, unusable)
    check_decision(sampler.name, decision, ctx)
    return decision


def _result(run: _Run, i: int) -> SequenceResult:
    config = run.config
    tokens = run.canvas.generation(i, config.gen_length, run.denoiser.mask_id)
    raw = generation_text(run.denoiser, tokens, stop_on_eos=config.stop_on_eos)
    return SequenceResult(
        text=cut_at_stop(raw, config.until),
        raw_text=raw,
        tokens=tokens,
        prompt_length=int(run.canvas.gen_start[i]),
        stopped_early=bool(run.stopped[i]),
        nfe_to_stop=run.watcher.nfe_at_stop[i],
        fallbacks=int(run.fallbacks[i]),
        trajectory=run.trajectory.row(i),
        decisions=run.diagnostics.row(i),
        **run.meter.row(i),
    )


def generate_batched(
    denoiser: Denoiser,
    prompts: Sequence[Sequence[int]],
    sampler: Policy,
    config: DecodeConfig,
    seeds: Sequence[int],
    batch_size: int = 1,
    progress: bool = True,
    desc: str = "decoding",
) -> list[SequenceResult]:
    """Decode many prompts in batches, results in input order. Models that ignore the padding
    mask (even injected, `models.padding_probe`) get batches of equal-length prompts only, and with a canvas
    multiple (16-bit models by default) batches hold rows of one canonical width only, so that results never
    depend on batch composition."""
    check_batch_size(batch_size)
    batches = batch_groups(denoiser, prompts, config, batch_size)
    results: list[SequenceResult | None] = [None] * len(prompts)
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, leave=False)
    for idx in batches:
        out = generate(denoiser, [prompts[i] for i in idx], sampler, config, [seeds[i] for i in idx])
        for i, res in zip(idx, out):
            results[i] = res
        bar.update(len(idx))
    bar.close()
    return results  # type: ignore[return-value]


def batch_groups(denoiser: Denoiser, prompts: Sequence[Sequence[int]], config: DecodeConfig,
                 batch_size: int) -> list[list[int]]:
    """Indices of the prompts in each batch: consecutive prompts of one group key (the prompt length for models
    that ignore the padding mask, the canonical canvas width with a canvas multiple, else none), sorted by key."""
    multiple = canvas_multiple(denoiser, config)
    max_length = getattr(denoiser, "max_length", None)

    def key(i: int) -> int:
        if not denoiser.honours_padding_mask:
            return len(prompts[i])
        return canonical_width(len(prompts[i]), config.gen_length, multiple, max_length) if multiple else 0

    batches: list[list[int]] = []
    for i in sorted(range(len(prompts)), key=lambda i: (key(i), i)):
        if batches and len(batches[-1]) < batch_size and key(batches[-1][0]) == key(i):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


__all__ = ["DecodeConfig", "SequenceResult", "batch_groups", "canvas_multiple", "cut_at_stop", "generate",
           "generate_batched", "generation_text"]
