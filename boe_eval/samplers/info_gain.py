"""Info-Gain sampler (arXiv 2602.18176; `yks23/Information-Gain-Sampler`
`dllm/dllm/pipelines/info_gain/{core.py, llada/sampler.py}`; docs/samplers/info_gain.md).

Per step, with k the schedule's count for the step:
1. if k covers every masked slot of the block: write them all (no look-ahead);
2. bypass (optional `threshold`): if some masked block slot has top-1 probability >= threshold, write those
   (at most k, most probable first) and skip the look-ahead;
3. candidates: action 0 is the top-k block slots by confidence p(x0); actions 1..N-1 take the top-k of
   p(x0_c) / position_temperature + Gumbel noise (x0_c a fresh token sample at T > 0, the argmax at T = 0);
   duplicates are dropped (a single distinct action is written without look-ahead);
4. look-ahead: one forward per distinct action a on the state with a written; score

       J(a) = -C(a) - H_next(a),   C(a) = sum_{i in a} H_i(current),   H_next(a) = mean entropy of the
       look-ahead prediction over the slots still masked after a

   (J = IG - C up to the constant current mean entropy), and write the best action.
The chosen action's look-ahead prediction is the next step's prediction (no new forward for it), so a step
costs one forward per distinct candidate. The per-step counts follow the reference's linear schedule
(round(remaining / steps left), zero-count steps dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from boe_eval.decoding.meter import MeteredDenoiser
from boe_eval.errors import ConfigError
from boe_eval.decoding.prediction import entropy, forbid, lookahead_logits
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import KnobRule, StepCost
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler, top_k_mask

GUMBEL_EPS = 1e-10


@dataclass
class InfoGainConfig(SamplerConfig):
    #: N: candidate actions per step (configs/gsm8k_info_gain.yaml and dllm eval.sh: 8)
    candidate_number: int = 8
    #: temperature of the positions' Gumbel perturbation (configs/gsm8k_info_gain.yaml: 0.2; dllm eval.sh: 0.1)
    position_temperature: float = 0.2
    #: high-confidence bypass on the top-1 probability, null = off (configs/gsm8k_info_gain.yaml: 0.8)
    threshold: float | None = 0.8

    def validate(self) -> None:
        n = self.candidate_number
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"candidate_number={n!r} is invalid: it must be a positive integer")
        t = self.position_temperature
        if t is None or isinstance(t, bool) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"position_temperature={t!r} is invalid: it must be a finite number >= 0 (0: top-k only)")
        if self.threshold is not None and (isinstance(self.threshold, bool) or not 0 <= self.threshold <= 1):
            raise ConfigError(f"threshold={self.threshold!r} is invalid: it must be null or a number in [0, 1]")


def linear_schedule(n_masked: int, steps: int) -> list[int]:
    """Tokens per step of dllm's `get_num_transfer_tokens` with the linear alpha schedule (deterministic):
    step j writes round(remaining / (steps - j)) (half to even), zero-count steps removed."""
    counts, remaining = [], n_masked
    for j in range(steps):
        count = min(int(torch.round(torch.tensor(remaining / (steps - j), dtype=torch.float64))), remaining)
        remaining -= count
        counts.append(count)
        if remaining == 0:
            break
    return [c for c in counts if c > 0]



@register_sampler("info_gain", InfoGainConfig)
class InfoGainSampler(Sampler):
    """Score up to N candidate unmasking actions by look-ahead: immediate entropy cost plus the remaining
    masks' mean entropy after the action; write the best (its look-ahead is the next step's prediction)."""

    knob = KnobRule(lambda p: StepCost(int(p.get("candidate_number", 8))), early_exit=True,
                     note="steps = budget / N (N look-ahead forwards per step, the current one reused); "
                          "bypass and duplicate candidates cost less: placed at measured NFE")

    config: InfoGainConfig

    def start(self, batch_size: int, width: int, device: torch.device) -> None:
        #: per row: (canvas the stored prediction was made on, its logits [L, V])
        self._lookahead: list[tuple[Tensor, Tensor] | None] = [None] * batch_size

    def block_budgets(self, n_masked: Tensor, steps_per_block: int) -> Tensor:
        rows = [linear_schedule(int(n), steps_per_block) for n in n_masked.tolist()]
        width = max([len(r) for r in rows] + [1])
        return torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.long)

    def current_prediction(
        self, model: MeteredDenoiser, rows: Tensor, x: Tensor, attention_mask: Tensor, timestep: Tensor | None
    ) -> Tensor | None:
        stored = []
        for j, row in enumerate(rows.tolist()):
            entry = self._lookahead[row]
            self._lookahead[row] = None
            stored.append(entry[1] if entry is not None and torch.equal(entry[0], x[j]) else None)
        if all(s is None for s in stored):
            return None
        vocab = next(s for s in stored if s is not None).shape[-1]
        logits = torch.zeros((x.shape[0], x.shape[1], vocab), dtype=torch.float32, device=x.device)
        fresh = torch.tensor([s is None for s in stored])
        live = fresh.nonzero().squeeze(1)
        if live.numel():
            with torch.no_grad():
                out = model.forward(rows[live], x[live.to(x.device)], attention_mask=attention_mask[live.to(x.device)],
                                    timestep=None if timestep is None else timestep[live.to(x.device)])
            logits[live.to(x.device)] = out.float()
        for j, s in enumerate(stored):
            if s is not None:
                logits[j] = s
        return logits

    # ------------------------------------------------------------------------------------ candidates
    def _sample_tokens(self, ctx: StepContext, j: int) -> Tensor:
        """A fresh token proposal for row j: Gumbel-max at the eligible slots at T > 0, else the argmax."""
        x0 = ctx.x0[j].clone()
        if ctx.temperature > 0:
            idx = ctx.eligible[j].nonzero().squeeze(1)
            g = ctx.generators[j]
            u = torch.rand((idx.numel(), ctx.logits.shape[-1]), generator=g, device=g.device, dtype=torch.float64)
            gumbel = -torch.log(-torch.log(u.clamp_min(1e-300))).to(ctx.logits.device)
            x0[idx] = (ctx.logits[j, idx].double() / ctx.temperature + gumbel).argmax(-1)
        return x0

    def _candidates(self, ctx: StepContext, j: int, k: int) -> list[tuple[Tensor, Tensor]]:
        """Distinct (slots [k] sorted, tokens [L]) actions of row j, action 0 first."""
        valid = ctx.eligible[j].nonzero().squeeze(1)
        first = top_k_mask(ctx.confidence[j : j + 1], _row(ctx, j), k=torch.tensor([k]))[0]
        actions = [(first.nonzero().squeeze(1), ctx.x0[j])]
        seen = {tuple(actions[0][0].tolist())}
        g = ctx.generators[j]
        for _ in range(1, self.config.candidate_number):
            tokens = self._sample_tokens(ctx, j)
            conf = ctx.probs[j, valid].gather(-1, tokens[valid][:, None])[:, 0].float()
            conf = conf.masked_fill(ctx.suppressed[j, valid] & (tokens[valid] == ctx.x0[j, valid]), float("-inf"))
            u = torch.rand(valid.numel(), generator=g, device=g.device).to(conf.device)  # float32, as the reference
            noise = -torch.log(-torch.log(u + GUMBEL_EPS) + GUMBEL_EPS)
            pick = torch.topk(conf / self.config.position_temperature + noise, k).indices
            slots = torch.sort(valid[pick]).values
            key = tuple(slots.tolist())
            if key not in seen:
                seen.add(key)
                actions.append((slots, tokens))
        return actions

    def _lookahead_scores(self, ctx: StepContext, per_row: dict[int, list[tuple[Tensor, Tensor]]]) -> dict:
        """J for every candidate of every row, and the look-ahead logits, one metered forward per candidate
        index (the rows that have that many candidates, batched)."""
        entropy_now = ctx.entropy.double()
        results: dict[int, list[tuple[float, Tensor, Tensor]]] = {j: [] for j in per_row}
        for c in range(max(len(v) for v in per_row.values())):
            js = [j for j, v in per_row.items() if len(v) > c]
            states, still = [], []
            for j in js:
                slots, tokens = per_row[j][c]
                state = ctx.x[j].clone()
                state[slots] = tokens[slots]
                states.append(state)
                left = ctx.masked[j].clone()
                left[slots] = False
                still.append(left)
            index = torch.tensor(js, device=ctx.x.device)
            states_t, still_t = torch.stack(states), torch.stack(still)
            raw = lookahead_logits(ctx, states_t, still_t, index)
            h_next_all = entropy(forbid(raw, ctx.model.forbidden_ids)).double()
            for n, j in enumerate(js):
                slots, tokens = per_row[j][c]
                cost = float(entropy_now[j, slots].sum())
                left = still_t[n]
                h_next = float(h_next_all[n][left].sum() / max(int(left.sum()), 1)) if bool(left.any()) else 0.0
                results[j].append((-cost - h_next, raw[n], states_t[n]))
        return results

    def select(self, ctx: StepContext) -> StepDecision:
        commit = torch.zeros_like(ctx.eligible)
        tokens = ctx.x0.clone()
        pending: dict[int, list[tuple[Tensor, Tensor]]] = {}
        top1 = ctx.probs.max(-1).values
        for j in range(ctx.batch):
            n_left = int(ctx.eligible[j].sum())
            k = int(ctx.budget[j])
            if n_left == 0:
                continue
            if k >= n_left:  # the block's last step: write everything
                commit[j] = ctx.eligible[j]
                continue
            k = max(k, 1)
            if self.config.threshold is not None:
                sure = ctx.eligible[j] & ~ctx.suppressed[j] & (top1[j] >= self.config.threshold)
                if bool(sure.any()):
                    count = torch.tensor([min(int(sure.sum()), k)])
                    view = _row(ctx, j, eligible=sure)
                    commit[j] = top_k_mask(top1[j : j + 1], view, k=count)[0]
                    continue
            if self.config.candidate_number <= 1 or self.config.position_temperature <= 0:
                commit[j] = top_k_mask(ctx.confidence[j : j + 1], _row(ctx, j), k=torch.tensor([k]))[0]
                continue
            actions = self._candidates(ctx, j, k)
            if len(actions) == 1:
                commit[j, actions[0][0]] = True
                continue
            pending[j] = actions
        if pending:
            scored = self._lookahead_scores(ctx, pending)
            for j, options in scored.items():
                best = max(range(len(options)), key=lambda c: (options[c][0], -c))
                slots, chosen_tokens = pending[j][best]
                commit[j, slots] = True
                tokens[j] = torch.where(commit[j], chosen_tokens, tokens[j])
                self._lookahead[int(ctx.rows[j])] = (options[best][2], options[best][1])
        return StepDecision(commit=commit, tokens=tokens)


class _RowView:
    """The fields `top_k_mask` reads, for one row of a step context (optionally other eligible slots)."""

    def __init__(self, ctx: StepContext, j: int, eligible: Tensor | None = None) -> None:
        self.eligible = (ctx.eligible[j] if eligible is None else eligible)[None]
        self.suppressed = ctx.suppressed[j : j + 1]
        self.budget = ctx.budget[j : j + 1]


def _row(ctx: StepContext, j: int, eligible: Tensor | None = None) -> _RowView:
    return _RowView(ctx, j, eligible)
