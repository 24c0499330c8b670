"""Log-likelihood of a continuation under a masked diffusion LM by the Monte-Carlo ELBO.

For a context c and a continuation x of T tokens the masked-diffusion bound (LLaDA, Nie et al. 2025,
conditional form of its eq. 3; SMDM) is

    log p(x | c) >= E_{l ~ U{1..T}} E_{S ⊆ [T], |S| = l} [ (T / l) Σ_{i ∈ S} log p(x_i | c, x with S masked) ]

and LLaDA's lm-eval adapter (`eval_llada.py`: `_forward_process`, `get_loglikelihood`; ZHZisZZ/dllm's
`MDLMEvalHarness` is the same estimator) estimates it with `mc_num` masked copies of the sequence in
rounds of `mc_batch_size` rows: per round one k ~ U{1..T}, row j masks l_j = ((k − 1 + round(j·T/b)) mod T) + 1
continuation positions (evenly spaced counts: stratified sampling of l), the positions uniformly
without replacement; a row's loss is Σ_{masked} CE · T / l_j, a round's value the mean over its rows,
and the estimate −(mean over rounds). `mc_num = 128`, `b = 32` are LLaDA's defaults.

Where this restatement differs (docs/protocols.md §5):
* the offsets round(j·T/b) are rounded half up in integer arithmetic, so each row's l is exactly
  uniform on 1..T (LLaDA's float round-half-to-even maps two k to one l when j·T/b is a half
  integer, e.g. T = 3, b = 2 never masks all 3 tokens in row 1);
* every request draws its masks from its own generator (seeded per request), so values do not
  depend on batch composition, order or rank; requests are packed into one forward
  (right-padded, with an attention mask) up to `max_rows` rows, whole rounds only;
* time-conditioned denoisers (MDLM) get t = l / T; the mask token is never a greedy prediction;
* no classifier-free guidance.

Every denoiser call goes through `MeteredDenoiser`: a request's NFE is its number of masked copies
evaluated (mc_num, plus T for the optional greedy check), tokens and wall time are shared per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from boe_eval.decoding.meter import Meter, MeteredDenoiser
from boe_eval.errors import ConfigError
from boe_eval.models.denoiser import Denoiser

_METER_FIELDS = ("forwards", "backwards", "nfe", "tokens", "wall_time")


@dataclass(frozen=True)
class ELBOConfig:
    """Monte-Carlo settings: `mc_num` masked copies per request in rounds of `mc_batch_size`
    (one stratified draw of mask counts per round); at most `max_rows` rows per forward (at least
    one round); `check_greedy` runs LLaDA's greedy check (T more forwards per request)."""

    mc_num: int = 128
    mc_batch_size: int = 32
    max_rows: int = 32
    check_greedy: bool = False

    def validate(self) -> None:
        for name in ("mc_num", "mc_batch_size", "max_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}={value!r} is invalid: it must be a positive integer")
        if self.mc_num % self.mc_batch_size:
            raise ConfigError(
                f"mc_num={self.mc_num} is invalid: it must be a multiple of mc_batch_size={self.mc_batch_size}"
            )

    @property
    def rounds(self) -> int:
        return self.mc_num // self.mc_batch_size

    @property
    def requests_per_forward(self) -> int:
        return max(1, self.max_rows // self.mc_batch_size)


@dataclass
class LikelihoodResult:
    """One request: the ELBO estimate of log p(continuation | context), its Monte-Carlo standard
    error (std of the round values / sqrt(rounds); NaN with one round), the greedy check and compute."""

    logprob: float
    stderr: float
    is_greedy: bool
    context_tokens: int
    continuation_tokens: int
    compute: dict


def stratified_mask_counts(k: int, target_len: int, batch: int) -> list[int]:
    """Mask counts of one round: l_j = ((k − 1 + round_half_up(j·T/b)) mod T) + 1, j = 0..b−1."""
    return [((k - 1 + (2 * j * target_len + batch) // (2 * batch)) % target_len) + 1 for j in range(batch)]


def draw_masks(target_len: int, mc_num: int, mc_batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """All masks of one request: bool [rounds, b, T] (True = masked) and counts long [rounds, b]."""
    rounds = mc_num // mc_batch_size
    masks = torch.zeros(rounds, mc_batch_size, target_len, dtype=torch.bool)
    counts = torch.zeros(rounds, mc_batch_size, dtype=torch.long)
    for r in range(rounds):
        k = int(torch.randint(1, target_len + 1, (1,), generator=generator))
        for j, count in enumerate(stratified_mask_counts(k, target_len, mc_batch_size)):
            chosen = torch.randperm(target_len, generator=generator)[:count]
            masks[r, j, chosen] = True
            counts[r, j] = count
    return masks, counts


def _metered_forward(
    denoiser: Denoiser, meter: Meter, owners: Tensor, x: Tensor, attention_mask: Tensor, timestep: Tensor | None
) -> Tensor:
    """One metered call on rows owned by requests `owners` (repeats allowed: each row counts once
    for its owner)."""
    call = Meter(len(owners), backward_cost=meter.backward_cost)
    logits = MeteredDenoiser(denoiser, call)(
        torch.arange(len(owners)), x, attention_mask=attention_mask, timestep=timestep
    )
    for name in _METER_FIELDS:
        getattr(meter, name).index_add_(0, owners, getattr(call, name))
    return logits


def _chunks(order: list[int], lengths: Sequence[int], size: int, equal_length_only: bool) -> list[list[int]]:
    chunks: list[list[int]] = []
    for i in order:
        if chunks and len(chunks[-1]) < size and (not equal_length_only or lengths[chunks[-1][0]] == lengths[i]):
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def _pad(denoiser: Denoiser, seqs: Sequence[Sequence[int]], device) -> tuple[Tensor, Tensor]:
    width = max(len(s) for s in seqs)
    x = torch.full((len(seqs), width), denoiser.pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        attn[i, : len(s)] = 1
    return x.to(device), attn.to(device)


@torch.no_grad()
def _elbo_rounds(
    denoiser: Denoiser,
    meter: Meter,
    chunk: list[int],
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    draws: dict[int, tuple[Tensor, Tensor]],
    config: ELBOConfig,
) -> dict[int, list[float]]:
    """Round values (mean over rows of (T / l) Σ CE) for every request of `chunk`."""
    device = denoiser.device
    b = config.mc_batch_size
    seqs = [list(pairs[i][0]) + list(pairs[i][1]) for i in chunk for _ in range(b)]
    clean, attn = _pad(denoiser, seqs, device)
    owners = torch.as_tensor([i for i in chunk for _ in range(b)], dtype=torch.long)
    values: dict[int, list[float]] = {i: [] for i in chunk}
    for r in range(config.rounds):
        masked = torch.zeros_like(clean, dtype=torch.bool)
        counts = torch.empty(len(seqs), dtype=torch.float64)
        lengths = torch.empty(len(seqs), dtype=torch.float64)
        for n, i in enumerate(chunk):
            ctx, cont = len(pairs[i][0]), len(pairs[i][1])
            masked[n * b : (n + 1) * b, ctx : ctx + cont] = draws[i][0][r].to(device)
            counts[n * b : (n + 1) * b] = draws[i][1][r].double()
            lengths[n * b : (n + 1) * b] = cont
        x = torch.where(masked, torch.full_like(clean, denoiser.mask_id), clean)
        timestep = (counts / lengths).float().to(device) if denoiser.time_conditioned else None
        logits = _metered_forward(denoiser, meter, owners, x, attn, timestep)
        ce = F.cross_entropy(logits[masked].float(), clean[masked], reduction="none").double().cpu()
        row_of = masked.nonzero()[:, 0].cpu()
        loss = torch.zeros(len(seqs), dtype=torch.float64).index_add_(0, row_of, ce) * lengths / counts
        for n, i in enumerate(chunk):
            values[i].append(float(loss[n * b : (n + 1) * b].mean()))
    return values


@torch.no_grad()
def _greedy_matches(
    denoiser: Denoiser, meter: Meter, chunk: list[int], pairs: Sequence[tuple[Sequence[int], Sequence[int]]]
) -> dict[int, bool]:
    """LLaDA's `suffix_greedy_prediction`: the continuation fully masked, then T steps that each write
    the argmax at the single most confident masked position; True when the result is the continuation."""
    device = denoiser.device
    x, attn = _pad(denoiser, [list(pairs[i][0]) + [denoiser.mask_id] * len(pairs[i][1]) for i in chunk], device)
    target, _ = _pad(denoiser, [list(pairs[i][0]) + list(pairs[i][1]) for i in chunk], device)
    owners = torch.as_tensor(chunk, dtype=torch.long)
    forbidden = torch.as_tensor(denoiser.forbidden_ids, dtype=torch.long, device=device)
    cont_len = torch.as_tensor([len(pairs[i][1]) for i in chunk], dtype=torch.float32, device=device)
    while True:
        is_masked = (x == denoiser.mask_id) & attn.bool()
        active = is_masked.any(dim=1).nonzero().squeeze(1)
        if len(active) == 0:
            break
        rows_masked = is_masked[active]
        timestep = None
        if denoiser.time_conditioned:
            timestep = (rows_masked.sum(1).float() / cont_len[active]).clamp(min=1e-5)
        logits = _metered_forward(denoiser, meter, owners[active.cpu()], x[active], attn[active], timestep).float()
        logits[..., forbidden] = float("-inf")
        confidence, token = logits.softmax(-1).max(-1)
        confidence = confidence.masked_fill(~rows_masked, -1.0)
        position = confidence.argmax(dim=1)
        x[active, position] = token[torch.arange(len(active), device=device), position]
    return {i: bool(torch.equal(x[n], target[n])) for n, i in enumerate(chunk)}


def elbo_loglikelihoods(
    denoiser: Denoiser,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    seeds: Sequence[int],
    config: ELBOConfig,
    progress: bool = False,
) -> list[LikelihoodResult]:
    """ELBO estimates of log p(continuation | context) for token-id pairs, in input order. Request i
    draws its masks from a generator seeded with `seeds[i]`, so its value depends only on its own
    tokens, seed and `mc_num`/`mc_batch_size` (not on which requests share a forward, up to float
    rounding). An empty continuation has log-likelihood 0 and costs nothing."""
    config.validate()
    if len(seeds) != len(pairs):
        raise ValueError(f"{len(seeds)} seeds for {len(pairs)} requests")
    limit = denoiser.max_length
    for ctx, cont in pairs:
        if limit is not None and len(ctx) + len(cont) > limit:
            raise ValueError(
                f"context + continuation = {len(ctx)} + {len(cont)} tokens exceeds the model's {limit} positions"
            )
    meter = Meter(len(pairs))
    lengths = [len(c) + len(t) for c, t in pairs]
    scored = [i for i in range(len(pairs)) if len(pairs[i][1]) > 0]
    order = sorted(scored, key=lambda i: (lengths[i], i))
    chunks = _chunks(order, lengths, config.requests_per_forward, not denoiser.honours_padding_mask)
    values: dict[int, list[float]] = {}
    greedy: dict[int, bool] = {}
    bar = tqdm(total=len(order), desc="loglikelihood (ELBO)", disable=not progress, leave=False)
    for chunk in chunks:
        draws = {
            i: draw_masks(len(pairs[i][1]), config.mc_num, config.mc_batch_size,
                          torch.Generator().manual_seed(int(seeds[i])))
            for i in chunk
        }
        values.update(_elbo_rounds(denoiser, meter, chunk, pairs, draws, config))
        if config.check_greedy:
            greedy.update(_greedy_matches(denoiser, meter, chunk, pairs))
        bar.update(len(chunk))
    bar.close()
    results = []
    for i, (ctx, cont) in enumerate(pairs):
        rounds = values.get(i, [0.0])
        mean = sum(rounds) / len(rounds)
        if len(rounds) > 1:
            var = sum((v - mean) ** 2 for v in rounds) / (len(rounds) - 1)
            stderr = math.sqrt(var / len(rounds))
        else:
            stderr = 0.0 if i not in values else float("nan")
        results.append(
            LikelihoodResult(
                logprob=-mean,
                stderr=stderr,
                is_greedy=greedy.get(i, len(cont) == 0) if config.check_greedy else False,
                context_tokens=len(ctx),
                continuation_tokens=len(cont),
                compute=meter.row(i),
            )
        )
    return results


__all__ = ["ELBOConfig", "LikelihoodResult", "draw_masks", "elbo_loglikelihoods", "stratified_mask_counts"]
