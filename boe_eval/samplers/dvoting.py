"""dVoting, fast voting for dLLMs (Feng, Chen, Ma, Fang, Wang, arXiv 2602.12153; `fscdc/dVoting`
`generation_utils/llada_generate.py::generate_entropy_adaptive` with `enable_remask_sampling`, `remask_utils.py`,
`majority_voting.py`; docs/samplers/dvoting.md). Test-time scaling: up to N samples of each sequence, the later
ones re-decoding only the slots where the earlier samples disagree, then a majority vote.

Per row, samples s = 1..N are decoded one after another, each to completion, on an internal canvas:

* canvas: samples s <= floor(N/2) + 1 start from the fully masked generation; a later sample keeps every slot on
  which *all* earlier samples agree and masks the others, and always masks the last floor(G/4) of the G generation
  slots (`func_remask`, consistency 1.0);
* decoding (entropy-adaptive, one forward per iteration until no slot is masked): tokens x0 are Gumbel-max samples at
  `token_temperature` (fp64), H_i the entropy of p_i (float64, log(p + 1e-12)); blocks are visited left to right,
  skipping complete ones and stopping at the first block that is still masked after this iteration: in it every
  masked slot with H_i < `entropy_threshold` is written; if none is, the masked slot of lowest entropy is written
  once per forward (then the next block is looked at, with the guard used up);
* stop: before sample s >= 3, the answers of the samples so far are counted; decoding stops when the most common
  answer has more than floor(N/2) votes, or every valid answer agrees and it has at least floor(N/2);
* vote: the most common answer (ties: the one seen first); the row's output is the first sample with that answer
  (no valid answer: the last sample).

Every forward is one NFE for its row, made through the metered model, so a row's NFE is the sum of its samples'
iterations. The loop's own step makes no model call (`current_prediction` is a placeholder): the whole procedure
runs at a row's first step and the loop then writes the voted canvas, block by block, at no model call.

Deliberate differences, documented in docs/samplers/dvoting.md: an *answer* is the decoded generation (special
tokens skipped, stripped) or, with `answer_pattern`, its first regex match (the reference calls a dataset's
`extract_boxed_text`); forbidden ids (the mask token) are -inf as in every harness prediction; randomness comes from
each row's generator instead of the reference's global seed list.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.decoding.meter import MeteredDenoiser
from boe_eval.decoding.prediction import prepare_prediction
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.errors import ConfigError
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler
from boe_eval.samplers.cost import KnobRule, StepCost


@dataclass
class DVotingConfig(SamplerConfig):
    #: N, the most samples per sequence (`run_dvoting.sh` sampling_upper_bound: 5); the test-time-scaling knob
    samples: int = 5
    #: masked slots with entropy below this (nats) are written together (`run_dvoting.sh` entropy_thresh: 0.3)
    entropy_threshold: float = 0.3
    #: tokens are Gumbel-max samples at this temperature (`run_dvoting.sh` temperature: 0.6); null = the run's
    token_temperature: float | None = 0.6
    #: regex whose first match (group 1 if it has one) is a sample's answer; null: the whole decoded generation
    answer_pattern: str | None = None

    def validate(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ConfigError(f"samples={self.samples!r} is invalid: it must be a positive integer")
        if (self.entropy_threshold is None or isinstance(self.entropy_threshold, bool)
                or not math.isfinite(self.entropy_threshold) or self.entropy_threshold < 0):
            raise ConfigError(f"entropy_threshold={self.entropy_threshold!r} is invalid: it must be a number >= 0")
        if self.token_temperature is not None and (isinstance(self.token_temperature, bool) or not (
                math.isfinite(self.token_temperature) and self.token_temperature >= 0)):
            raise ConfigError(f"token_temperature={self.token_temperature!r} is invalid: it must be >= 0 "
                              "(or null for the run's temperature)")
        if self.answer_pattern is not None:
            try:
                re.compile(self.answer_pattern)
            except (re.error, TypeError) as error:
                raise ConfigError(f"answer_pattern={self.answer_pattern!r} is invalid: not a regular expression "
                                  f"({error})") from None


def entropy_commit(x: Tensor, masked: Tensor, entropy: Tensor, gen_start: int, gen_length: int, block_length: int,
                   threshold: float) -> Tensor:
    """Slots [L] bool one iteration writes on one canvas (the block-wise entropy rule, module docstring)."""
    commit = torch.zeros_like(masked)
    still = masked.clone()  # masked after this iteration's writes so far
    guard = True
    for start in range(gen_start, gen_start + gen_length, block_length):
        block = slice(start, min(start + block_length, gen_start + gen_length))
        if not bool(masked[block].any()):
            continue
        if bool(still[gen_start:start].any()):  # an earlier block is not complete
            break
        chosen = masked[block] & (entropy[block] < threshold)
        if not bool(chosen.any()) and guard:
            key = torch.where(masked[block], entropy[block], torch.full_like(entropy[block], float("inf")))
            chosen = torch.zeros_like(chosen)
            chosen[int(torch.argmin(key))] = True  # lowest entropy, ties to the leftmost slot
            guard = False
            commit[block] |= chosen
            still[block] &= ~chosen
            continue
        commit[block] |= chosen
        still[block] &= ~chosen
        if bool(still[block].any()):
            break
    return commit


def remasked_canvas(prompt_canvas: Tensor, samples: list[Tensor], gen_start: int, gen_length: int, number: int,
                    total: int, mask_id: int) -> Tensor:
    """The starting canvas of sample `number` (1-based) of `total` (`func_remask`)."""
    x = prompt_canvas.clone()
    region = slice(gen_start, gen_start + gen_length)
    x[region] = mask_id
    if number <= total // 2 + 1:
        return x
    past = torch.stack([s[region] for s in samples])
    agree = (past == past[:1]).all(0)
    x[region] = torch.where(agree, past[0], torch.full_like(past[0], mask_id))
    quarter = gen_length // 4
    if quarter:
        x[gen_start + gen_length - quarter:gen_start + gen_length] = mask_id
    return x


def answer_counts(answers: list[str | None]) -> list[tuple[str, int]]:
    """Valid answers with their votes, most common first, ties in order of first appearance (`Counter`)."""
    return Counter(a for a in answers if a is not None).most_common()


def should_stop(answers: list[str | None], total: int) -> bool:
    """The reference's answer-level consistency stop, checked before every sample after the second."""
    counts = [c for _, c in answer_counts(answers)]
    if not counts:
        return False
    top = counts[0]
    return top > total // 2 or (top == sum(counts) and top >= total // 2)


@register_sampler("dvoting", DVotingConfig)
class DVotingSampler(Sampler):
    """dVoting: up to N samples, later ones re-decode only where earlier ones disagree; majority vote."""

    knob = KnobRule(lambda p: StepCost(p["samples"]), adaptive="samples",
                    note="at most N forwards per generated slot; samples swept, placed at measured NFE")

    config: DVotingConfig

    def start(self, batch_size: int, width: int, device: torch.device) -> None:
        self._voted: list[Tensor | None] = [None] * batch_size  #: per row, the voted canvas (full width)
        self.samples_used: list[int] = [0] * batch_size  #: per row, samples decoded before the stop

    def current_prediction(
        self, model: MeteredDenoiser, rows: Tensor, x: Tensor, attention_mask: Tensor, timestep: Tensor | None
    ) -> Tensor | None:
        # the policy makes every forward itself (in `select`): the loop's step gets a placeholder, no model call
        vocab = int(model.embedding_matrix.shape[0])
        return torch.zeros((x.shape[0], x.shape[1], vocab), dtype=torch.float32, device=x.device)

    def block_budgets(self, n_masked: Tensor, steps_per_block: int) -> Tensor:
        # the voted canvas fills a block in one loop step (for confidence too: no decision step to compare)
        return n_masked[:, None].clone()

    def select(self, ctx: StepContext) -> StepDecision:
        rows = ctx.rows.tolist()
        todo = [j for j, row in enumerate(rows) if self._voted[row] is None]
        if todo:
            self._decode_rows(ctx, todo)
        tokens = torch.stack([self._voted[row] for row in rows]).to(ctx.x.device)
        return StepDecision(commit=ctx.eligible.clone(), tokens=tokens)

    # --- the procedure, for the rows `todo` of this step (their first step) ---------------------------------
    def _decode_rows(self, ctx: StepContext, todo: list[int]) -> None:
        config, model = self.config, ctx.model
        total = config.samples
        gen_start = [int(ctx.gen_start[j]) for j in todo]
        gen_length = [int((ctx.masked[j] | ctx.committed[j]).sum()) for j in todo]
        block_length = [int(ctx.block_end[j] - ctx.block_start[j]) for j in todo]
        samples: list[list[Tensor]] = [[] for _ in todo]
        answers: list[list[str | None]] = [[] for _ in todo]
        live = list(range(len(todo)))
        for number in range(1, total + 1):
            live = [k for k in live if not (number > 2 and should_stop(answers[k], total))]
            if not live:
                break
            canvases = [remasked_canvas(ctx.x[todo[k]], samples[k], gen_start[k], gen_length[k], number, total,
                                        model.mask_id) for k in live]
            finished = self._decode_samples(ctx, [todo[k] for k in live], canvases,
                                            [gen_start[k] for k in live], [gen_length[k] for k in live],
                                            [block_length[k] for k in live])
            for k, canvas in zip(live, finished):
                samples[k].append(canvas)
                answers[k].append(self._answer(model, canvas[gen_start[k]:gen_start[k] + gen_length[k]]))
        for k, j in enumerate(todo):
            counts = answer_counts(answers[k])
            pick = answers[k].index(counts[0][0]) if counts else len(samples[k]) - 1
            self._voted[int(ctx.rows[j])] = samples[k][pick]
            self.samples_used[int(ctx.rows[j])] = len(samples[k])

    def _decode_samples(self, ctx: StepContext, js: list[int], canvases: list[Tensor], gen_start: list[int],
                        gen_length: list[int], block_length: list[int]) -> list[Tensor]:
        """Decode one sample per row `js[k]` from `canvases[k]` to completion, the rows' forwards batched."""
        model = ctx.model
        x = torch.stack(canvases)
        attention = ctx.attention_mask[js]
        region = torch.zeros_like(x, dtype=torch.bool)
        for k in range(len(js)):
            region[k, gen_start[k]:gen_start[k] + gen_length[k]] = True
        forbidden = torch.tensor(model.forbidden_ids, dtype=torch.long, device=x.device)
        temperature = ctx.temperature if self.config.token_temperature is None else self.config.token_temperature
        while True:
            masked = (x == model.mask_id) & region
            open_rows = masked.any(1).nonzero().squeeze(1)
            if open_rows.numel() == 0:
                return list(x.unbind(0))
            sub = open_rows.tolist()
            logits = model.forward(ctx.rows[[js[k] for k in sub]], x[open_rows],
                                   attention_mask=attention[open_rows])
            generators = [ctx.generators[js[k]] for k in sub]
            prediction = prepare_prediction(logits, masked[open_rows], forbidden, temperature, generators)
            p = torch.softmax(prediction.logits.double(), dim=-1)
            entropy = -(p * torch.log(p + 1e-12)).sum(-1)
            for i, k in enumerate(sub):
                commit = entropy_commit(x[k], masked[k], entropy[i], gen_start[k], gen_length[k], block_length[k],
                                        self.config.entropy_threshold)
                x[k] = torch.where(commit, prediction.x0[i], x[k])

    def _answer(self, model: MeteredDenoiser, tokens: Tensor) -> str | None:
        """A sample's answer: its decoded text, or the first match of `answer_pattern` (None: no valid answer)."""
        text = model.tokenizer.decode(tokens.tolist(), skip_special_tokens=True).strip()
        if self.config.answer_pattern is None:
            return text or None
        match = re.search(self.config.answer_pattern, text)
        if match is None:
            return None
        return match.group(1) if match.groups() else match.group(0)
