"""Straightforward re-statements of the reference samplers, written the way their authors' code is
(one sequence, explicit loops, `topk`), independently of boe_eval's loop and sampler classes.

Each takes `model`, a function x [1, L] -> logits [1, L, V] (the mask token already at -inf), and
returns (generated tokens, number of model calls). Sources: docs/references.md §3-§9 and the files
named in each docstring.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def uniform_transfer_counts(n_masked: int, steps: int) -> list[int]:
    """LLaDA `get_num_transfer_tokens` for one sequence."""
    base, remainder = divmod(n_masked, steps)
    return [base + (1 if i < remainder else 0) for i in range(steps)]


def _canvas(prompt: list[int], gen_length: int, mask_id: int) -> torch.Tensor:
    x = torch.full((1, len(prompt) + gen_length), mask_id, dtype=torch.long)
    x[0, : len(prompt)] = torch.tensor(prompt)
    return x


def pc_sampler_reference(model, prompt, mask_id, gen_length, steps, block_length, lambd, alpha, bg_freq):
    """NEUIR/PC-Sampler `generate_with_pc_sampler` at temperature 0: the score of the block slice is
    exp(-lambda * j) * clamp(-p * log(f_bg + 1e-9), max=alpha), j counted from the block start."""
    x = _canvas(prompt, gen_length, mask_id)
    p0, num_blocks = len(prompt), gen_length // block_length
    steps_b, calls = steps // num_blocks, 0
    for b in range(num_blocks):
        lo, hi = p0 + b * block_length, p0 + (b + 1) * block_length
        counts = uniform_transfer_counts(int((x[0, lo:hi] == mask_id).sum()), steps_b)
        for i in range(steps_b):
            logits = model(x)[0]
            calls += 1
            p = F.softmax(logits.double(), dim=-1)
            x0 = p.argmax(-1)
            conf = p.gather(-1, x0[:, None])[:, 0]
            block_conf, block_tok = conf[lo:hi], x0[lo:hi]
            salience = torch.clamp(-block_conf * torch.log(bg_freq[block_tok] + 1e-9), max=alpha)
            j = torch.arange(hi - lo, dtype=torch.float64)
            score = torch.exp(-lambd * j) * salience
            score = torch.where(x[0, lo:hi] == mask_id, score, torch.tensor(-math.inf, dtype=torch.float64))
            _, pick = torch.topk(score, counts[i])
            x[0, lo + pick] = x0[lo + pick]
    return x[0, p0:].tolist(), calls


def llada_remdm_reference(model, prompt, mask_id, gen_length, steps, block_length, remdm_number, generator=None):
    """guanghanwang/ReMDM-LLaDA `llada_remdm_sample`: per block 2*steps_b iterations; iterations in
    [r, r + steps_b), r = floor(7/8 * steps_b), first remask the `remdm_number` block tokens with the
    lowest confidence at commit time, then commit `remdm_number`; other iterations commit the
    uniform count. Tokens: Gumbel-max over p (T = 1) with noise drawn for the block's masked slots
    from `generator`, or argmax when `generator` is None."""
    x = _canvas(prompt, gen_length, mask_id)
    p0, num_blocks = len(prompt), gen_length // block_length
    steps_b, calls = steps // num_blocks, 0
    for b in range(num_blocks):
        lo, hi = p0 + b * block_length, p0 + (b + 1) * block_length
        cache = torch.full((x.shape[1],), math.inf, dtype=torch.float64)
        r = int(math.floor(steps_b * 7 / 8))
        counts = uniform_transfer_counts(block_length, steps_b)
        schedule = counts[:r] + [remdm_number] * steps_b + counts[r:]
        for i in range(2 * steps_b):
            if r <= i < r + steps_b:
                remask = torch.topk(cache, k=min(remdm_number, int(torch.isfinite(cache).sum())), largest=False).indices
                cache[remask] = math.inf
                x[0, remask] = mask_id
            masked = x[0] == mask_id
            logits = model(x)[0]
            calls += 1
            p = F.softmax(logits.double(), dim=-1)
            x0 = p.argmax(-1)
            if generator is not None:
                slots = (masked & (torch.arange(x.shape[1]) >= lo) & (torch.arange(x.shape[1]) < hi)).nonzero()[:, 0]
                u = torch.rand((len(slots), p.shape[-1]), generator=generator, dtype=torch.float64)
                x0[slots] = (torch.log(p[slots]) - torch.log(-torch.log(u))).argmax(-1)
            conf = p.gather(-1, x0[:, None])[:, 0]
            conf[hi:] = -math.inf
            conf = torch.where(masked, conf, torch.tensor(-math.inf, dtype=torch.float64))
            k = min(schedule[i], int(torch.isfinite(conf).sum()))
            pick = torch.topk(conf, k).indices
            x[0, pick] = x0[pick]
            cache[pick] = conf[pick]
    return x[0, p0:].tolist(), calls


def eb_sampler_reference(model, prompt, mask_id, gen_length, gamma, block_length=None, error_proxy="confidence"):
    """EB-Sampler (paper Alg. 1; PC-Sampler `generate_with_eb_sampler`, blocks added): sort the masked
    slots of the block by the error proxy, commit k = #{(cumsum H - cummax H) <= gamma}, k >= 1."""
    block_length = block_length or gen_length
    x = _canvas(prompt, gen_length, mask_id)
    p0, calls = len(prompt), 0
    for b in range(gen_length // block_length):
        lo, hi = p0 + b * block_length, p0 + (b + 1) * block_length
        while (x[0, lo:hi] == mask_id).any():
            logits = model(x)[0]
            calls += 1
            idx = (x[0, lo:hi] == mask_id).nonzero()[:, 0] + lo
            dist = torch.distributions.Categorical(logits=logits[idx].float())
            entropy = dist.entropy().double()
            probs = dist.probs
            if error_proxy == "confidence":
                error = -probs.max(-1).values.double()
            elif error_proxy == "entropy":
                error = entropy
            else:
                top2 = probs.topk(2, dim=-1).values
                error = -(top2[:, 0] - top2[:, 1]).double()
            order = torch.argsort(error, stable=True)
            h = entropy[order]
            k = int(((torch.cumsum(h, 0) - torch.cummax(h, 0).values) <= gamma).sum())
            k = max(1, min(k, len(idx)))
            chosen = idx[order[:k]]
            x[0, chosen] = logits[chosen].argmax(-1)
    return x[0, p0:].tolist(), calls


def klass_reference(model, prompt, mask_id, gen_length, steps, block_length, conf_threshold, kl_threshold, history=2):
    """shkim0116/KLASS `stable_confident_decode` (alg="klass", unmask_strategy="all", T = 0), with the
    fallback count clamped to the block's masked slots."""
    x = _canvas(prompt, gen_length, mask_id)
    p0, num_blocks = len(prompt), gen_length // block_length
    steps_b, calls = steps // num_blocks, 0
    kl_history = None
    p_prev = None
    for b in range(num_blocks):
        lo, hi = p0 + b * block_length, p0 + (b + 1) * block_length
        counts = uniform_transfer_counts(block_length, steps_b)
        for step in range(steps_b):
            in_block = torch.zeros(x.shape[1], dtype=torch.bool)
            in_block[lo:hi] = True
            mask_index = (x[0] == mask_id) & in_block
            if not mask_index.any():
                break
            logits = model(x)[0]
            calls += 1
            p = F.softmax(logits.double(), dim=-1)
            x0 = p.argmax(-1)
            conf = p.gather(-1, x0[:, None])[:, 0]
            if p_prev is None:
                kl = torch.full((x.shape[1],), math.inf, dtype=torch.float64)
                kl_history = torch.full((x.shape[1], history), math.inf, dtype=torch.float64)
            else:
                kl = (p * (torch.log(p + 1e-12) - torch.log(p_prev + 1e-12))).sum(-1)
            kl_history = torch.roll(kl_history, shifts=-1, dims=-1)
            kl_history[:, -1] = kl
            p_prev = p.clone()
            if step >= history - 1:
                stable = (kl_history < kl_threshold).all(-1)
            else:
                stable = torch.zeros_like(mask_index)
            ready = stable & (conf > conf_threshold) & mask_index
            if ready.any():
                pick = ready.nonzero()[:, 0]
            else:
                score = torch.where(mask_index, conf, torch.tensor(-math.inf, dtype=torch.float64))
                pick = torch.topk(score, min(counts[step], int(mask_index.sum()))).indices
            x[0, pick] = x0[pick]
    return x[0, p0:].tolist(), calls


def confidence_reference(model, prompt, mask_id, gen_length, steps, block_length):
    """LLaDA `generate`, low_confidence remasking, T = 0."""
    x = _canvas(prompt, gen_length, mask_id)
    p0, num_blocks = len(prompt), gen_length // block_length
    steps_b, calls = steps // num_blocks, 0
    for b in range(num_blocks):
        lo, hi = p0 + b * block_length, p0 + (b + 1) * block_length
        counts = uniform_transfer_counts(block_length, steps_b)
        for i in range(steps_b):
            logits = model(x)[0]
            calls += 1
            p = F.softmax(logits.double(), dim=-1)
            x0 = p.argmax(-1)
            conf = p.gather(-1, x0[:, None])[:, 0]
            conf[hi:] = -math.inf
            conf = torch.where(x[0] == mask_id, conf, torch.tensor(-math.inf, dtype=torch.float64))
            pick = torch.topk(conf, counts[i]).indices
            x[0, pick] = x0[pick]
    return x[0, p0:].tolist(), calls


def mdlm_remdm_step_probabilities(strategy, t, dt, eta, t_on=0.55, t_off=0.05, alpha_on=0.9):
    """kuleshov-group/remdm `_ddpm_caching_update`: (unmask probability of a masked slot, remask
    probability of an unmasked slot) for the step t -> t - dt, read off the q_xs rows."""
    move_t, move_s = t, t - dt
    alpha_t, alpha_s = 1 - move_t, 1 - move_s
    if strategy == "mdlm":
        return (move_t - move_s) / move_t, 0.0
    if strategy in ("remdm-cap", "remdm-rescale"):
        if strategy == "remdm-cap":
            sigma = min(eta, (1 - alpha_s) / alpha_t) if alpha_t > 0 else eta
        else:
            sigma = eta * (min(1, (1 - alpha_s) / alpha_t) if alpha_t > 0 else 1)
        stay_masked = (1 - alpha_s - sigma * alpha_t) / (1 - alpha_t)
        return 1 - stay_masked, sigma
    if strategy == "remdm-loop":
        if t > t_on:
            mt = 1 - (1 - t) * alpha_on / (1 - t_on)
            ms = 1 - (1 - t + dt) * alpha_on / (1 - t_on)
            return (mt - ms) / mt, 0.0
        if t <= t_off:
            mt = t * (1 - alpha_on) / t_off
            ms = (t - dt) * (1 - alpha_on) / t_off
            return (mt - ms) / mt, 0.0
        stay_masked = (1 - alpha_on - alpha_on * eta) / (1 - alpha_on)
        return 1 - stay_masked, eta
    raise ValueError(strategy)


def _nucleus(p, top_p):
    """remdm `_ddpm_caching_update` nucleus filter: keep sorted tokens with cumulative mass <= top_p
    (the first always), renormalise."""
    sorted_probs, sorted_indices = torch.sort(p, descending=True, dim=-1)
    top_p_mask = torch.cumsum(sorted_probs, dim=-1) <= top_p
    top_p_mask[..., 0] = True
    nucleus_probs = sorted_probs * top_p_mask
    nucleus_probs /= nucleus_probs.sum(dim=-1, keepdim=True)
    return torch.zeros_like(p).scatter_(-1, sorted_indices, nucleus_probs)


def remdm_schedule_reference(model, prompt, mask_id, gen_length, steps, strategy, eta, generator,
                             top_p=0.9, eps=1e-5, **loop_params):
    """kuleshov-group/remdm sampling (one block, log-linear schedule, `noise_removal`): per step
    t -> t - dt a masked slot is unmasked with the q_xs probability, its token drawn from the nucleus
    of p_x0; an unmasked generated slot is remasked with probability sigma. Randomness per step, in
    this order: Gumbel noise [#masked, V] for the tokens, one uniform per masked slot, one per
    unmasked generated slot (the harness's documented protocol)."""
    dt = (1 - eps) / steps
    probabilities = [mdlm_remdm_step_probabilities(strategy, 1 - i * dt, dt, eta, **loop_params) for i in range(steps)]
    return remdm_steps_reference(lambda x: model(x)[0], prompt, mask_id, gen_length, probabilities, generator, top_p)


def remdm_steps_reference(logits_of, prompt, mask_id, gen_length, probabilities, generator, top_p=0.9):
    """The loop of remdm's sampling given each step's (unmask, remask) probabilities: per step the nucleus of
    p_x0 (`logits_of(x)` [L, V]), then Gumbel noise [#masked, V] for the tokens, one uniform per masked slot, one
    per unmasked generated slot; then the noise-removal argmax if masks remain. Also the FB/DFM correctors'
    reference (tests/test_sampler_correctors.py), which differ only in their probabilities. (tokens, NFE)."""
    x = _canvas(prompt, gen_length, mask_id)
    p0, calls = len(prompt), 0
    for unmask_p, remask_p in probabilities:
        logits = logits_of(x)
        calls += 1
        p = _nucleus(F.softmax(logits.double(), dim=-1), top_p)
        masked = (x[0] == mask_id).nonzero()[:, 0]
        written = (x[0, p0:] != mask_id).nonzero()[:, 0] + p0
        u = torch.rand((len(masked), p.shape[-1]), generator=generator, dtype=torch.float64)
        tokens = (torch.log(p[masked]) - torch.log(-torch.log(u))).argmax(-1)
        unmask = torch.rand(len(masked), generator=generator, dtype=torch.float64) < unmask_p
        remask = torch.rand(len(written), generator=generator, dtype=torch.float64) < remask_p
        x[0, masked[unmask]] = tokens[unmask]
        x[0, written[remask]] = mask_id
    if (x[0] == mask_id).any():
        logits = logits_of(x)
        calls += 1
        masked = x[0] == mask_id
        x[0, masked] = logits.argmax(-1)[masked]
    return x[0, p0:].tolist(), calls
