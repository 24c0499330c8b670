"""Sequence oracle: a hidden Markov model with exact posterior marginals by forward-backward (Rabiner 1989,
scaled recursions), under soft evidence (see `boe_eval.oracles.base`).

p(x) = sum_z start[z_0] prod_t trans[z_{t-1}, z_t] prod_t emit[z_t, x_t]. With evidence factors e_t(s) the
forward pass uses the state likelihoods l_t(k) = sum_s emit[k, s] e_t(s); the symbol marginal at t is

    p(x_t = s | e) ∝ e_t(s) sum_k pred_t(k) emit[k, s] beta_t(k),   pred_t = alpha_{t-1} trans (start at t = 0).

`viterbi` maximises over (z, x) jointly. When every sequence has at most one state path of positive probability
(true of both shipped instances: each symbol is emitted by one state, or the state is fixed by the symbol and the
position), p(x) = max_z p(z, x), so the joint Viterbi path gives the exact conditional mode of x.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from boe_eval.oracles.base import FREE, OracleDenoiser

TINY = 1e-300


class HMMOracle(OracleDenoiser):
    """Exact denoiser of an HMM's sequences (posterior marginals by forward-backward, float64)."""

    def __init__(self, start: Tensor, trans: Tensor, emit: Tensor, tokenizer, symbols: str, name: str) -> None:
        super().__init__(tokenizer, symbols, name)
        self.start = start.to(torch.float64)
        self.trans = trans.to(torch.float64)
        self.emit = emit.to(torch.float64)

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], tokenizer, symbols: str, name: str) -> HMMOracle:
        return cls(tensors["start"], tensors["trans"], tensors["emit"], tokenizer, symbols, name)

    def _recursions(self, evidence: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor], Tensor]:
        """(pred_t, beta_t, state likelihoods l_t) per position and log p(evidence) [b]."""
        emit, trans = self.emit.to(evidence.device), self.trans.to(evidence.device)
        like = evidence @ emit.T  # [b, n, K]
        n = evidence.shape[1]
        preds, alphas, scales = [], [], []
        pred = self.start.to(evidence.device).expand(evidence.shape[0], -1)
        for t in range(n):
            if t:
                pred = alphas[-1] @ trans
            joint = pred * like[:, t]
            raw = joint.sum(-1, keepdim=True)
            scale = raw.clamp_min(TINY)
            impossible = raw.eq(0) if t == 0 else impossible | raw.eq(0)
            preds.append(pred)
            alphas.append(joint / scale)
            scales.append(scale)
        betas = [torch.ones_like(alphas[-1])]
        for t in range(n - 2, -1, -1):
            betas.append((like[:, t + 1] * betas[-1]) @ trans.T / scales[t + 1])
        betas.reverse()
        log_z = torch.log(torch.cat(scales, dim=-1)).sum(-1)
        log_z = torch.where(impossible[:, 0], torch.full_like(log_z, float("-inf")), log_z)  # evidence has p = 0
        return preds, betas, [like[:, t] for t in range(n)], log_z

    def posterior(self, evidence: Tensor) -> Tensor:
        preds, betas, _, _ = self._recursions(evidence)
        emit = self.emit.to(evidence.device)
        states = torch.stack(preds, 1) * torch.stack(betas, 1)  # [b, n, K]
        unnorm = evidence * (states @ emit)  # [b, n, S]
        return unnorm / unnorm.sum(-1, keepdim=True).clamp_min(TINY)

    def log_evidence(self, evidence: Tensor) -> Tensor:
        return self._recursions(evidence)[3]

    def mode(self, template: str) -> str:
        return self.viterbi(template)

    def viterbi(self, template: str) -> str:
        """argmax over (z, x) of p(z, x | template), returned as the symbol string (the mode of x, see module doc)."""
        ev = self.hard_evidence(template)[0].numpy()
        with np.errstate(divide="ignore"):
            log_start, log_trans = np.log(self.start.numpy()), np.log(self.trans.numpy())
            scored = np.log(self.emit.numpy()[None] * ev[:, None, :])  # [n, K, S]
        best_symbol = scored.argmax(-1)  # [n, K]
        emission = scored.max(-1)  # [n, K]
        delta = log_start + emission[0]
        back = []
        for t in range(1, len(template)):
            cand = delta[:, None] + log_trans  # [K_prev, K]
            back.append(cand.argmax(0))
            delta = cand.max(0) + emission[t]
        state = int(delta.argmax())
        path = [state]
        for pointers in reversed(back):
            state = int(pointers[state])
            path.append(state)
        path.reverse()
        return "".join(self.symbols[int(best_symbol[t, k])] for t, k in enumerate(path))

    def sample(self, n: int, rng: np.random.Generator) -> str:
        """One sequence x ~ p(x) of length n."""
        start, trans, emit = self.start.numpy(), self.trans.numpy(), self.emit.numpy()
        state = rng.choice(len(start), p=start)
        out = []
        for t in range(n):
            if t:
                state = rng.choice(len(start), p=trans[state])
            out.append(self.symbols[rng.choice(emit.shape[1], p=emit[state])])
        return "".join(out)


def random_hmm(seed: int, states: int = 5, symbols_per_state: int = 2, successors: int = 3) -> dict[str, Tensor]:
    """Random sparse HMM from a seed: each state may move to `successors` states (Dirichlet(1) weights) and emits
    its own `symbols_per_state` symbols (Dirichlet(1)); so every symbol names its state (unique state path)."""
    rng = np.random.default_rng(seed)
    trans = np.zeros((states, states))
    for k in range(states):
        nxt = rng.choice(states, size=successors, replace=False)
        trans[k, nxt] = rng.dirichlet(np.ones(successors))
    emit = np.zeros((states, states * symbols_per_state))
    for k in range(states):
        emit[k, k * symbols_per_state : (k + 1) * symbols_per_state] = rng.dirichlet(np.ones(symbols_per_state))
    start = rng.dirichlet(np.ones(states))
    return {"start": torch.tensor(start), "trans": torch.tensor(trans), "emit": torch.tensor(emit)}


def two_modes_hmm(switch: float = 0.1) -> dict[str, Tensor]:
    """Hand-built instance where decoding marginals in parallel gives impossible sequences. Positions come in pairs
    (2j, 2j + 1); each pair is written in one mode, 0 (symbols {a, b}) or 1 ({c, d}), and the mode may change only
    between pairs (probability `switch`). Even positions: a .9 / b .1 in mode 0, c .5 / d .5 in mode 1; odd
    positions: a .5 / b .5 and c .9 / d .1. Far from any revealed symbol the modes are ~1/2 each, so the marginal
    argmax is `a` (p ~.45) at even and `c` (p ~.45) at odd positions: committing both halves of a pair from one
    prediction writes `ac`, which has probability 0. States: (mode, phase) = (0, even), (0, odd), (1, even), (1, odd);
    symbols name the mode and the position names the phase, so each sequence has one state path."""
    stay = 1.0 - switch
    start = torch.tensor([0.5, 0.0, 0.5, 0.0], dtype=torch.float64)
    trans = torch.tensor(
        [[0, 1, 0, 0], [stay, 0, switch, 0], [0, 0, 0, 1], [switch, 0, stay, 0]], dtype=torch.float64
    )
    emit = torch.tensor(
        [[0.9, 0.1, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 0.9, 0.1]], dtype=torch.float64
    )
    return {"start": start, "trans": trans, "emit": emit}


def reveal(sequence: str, fraction: float, rng: np.random.Generator) -> str:
    """Template of `sequence` with a random `fraction` of its positions revealed, the rest free ('.')."""
    shown = rng.random(len(sequence)) < fraction
    return "".join(ch if s else FREE for ch, s in zip(sequence, shown))


__all__ = ["HMMOracle", "random_hmm", "reveal", "two_modes_hmm"]
