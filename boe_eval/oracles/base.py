"""Exact oracle denoisers behind the `Denoiser` contract (issue 14).

An oracle is a known data distribution p(x) over sequences of n symbols whose conditionals it computes exactly,
so a sampler's decisions can be scored against the truth without training anything.

Canvas layout (what an oracle task's prompt looks like): `<template>=` followed by the n generated slots, where
`template` has one character per generated position: a symbol fixes that position, `.` leaves it free. So a
row's real length is 2n + 1 and the separator `=` sits at position n.

Soft inputs: the input embedding of a position is a vector w over the vocabulary (E = identity, so a written
token is its one-hot vector and a masked slot is the mask basis vector e_m). Each position contributes a
*soft-evidence factor* over the symbols,

    generated slot t:   phi_t(s) = w_t[s] + w_t[MASK]        (e_m gives phi = 1: no evidence)
    template char t:    psi_t(s) = w_t[s] + w_t['.']         ('.' gives psi = 1: no evidence)

and the oracle returns, at generated slot t (and at its template character), the exact posterior marginal

    p(x_t = s | evidence) = sum_x p(x) [x_t = s] prod_u psi_u(x_u) phi_u(x_u) / sum_x p(x) prod_u psi_u(x_u) phi_u(x_u).

For one-hot inputs this is p(x_t = s | visible tokens); for BoE's soft write e_m + alpha (pi_i - e_m) the factor
at i is alpha pi_i(s) + (1 - alpha): a product of per-position evidence factors, so the logits are smooth
(polynomial-over-polynomial, then log) functions of the input embeddings, and BoE's surrogate gradient (eq. 13-14),
TIS and the relaxed entropy drop of eq. 12 are exact. There is no attention, hence ActiveQueryAttention (eq. 30)
is a no-op here: `active_queries` yields the holder and changes nothing (the gradient is always the dense one).

Time: the exact conditional p(x_t | visible tokens) of a masked diffusion model does not depend on the diffusion
time, so an oracle accepts a timestep (`time_conditioned = True`: MDLM-style schedules such as ReMDM-cap/rescale/loop
run on it) and ignores it.

Everything is float64. Impossible symbols get the logit log(1e-300) (finite, so entropies and their gradients
stay finite); every non-symbol token is forbidden (the loop sets it to -inf).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from boe_eval.models.denoiser import Denoiser

#: separator between the template and the generated slots, and the "free" template character
SEPARATOR = "="
FREE = "."
#: logit of a symbol with posterior probability 0 (log 1e-300: finite, exp() underflows to ~0)
LOG_ZERO = math.log(1e-300)
MODEL_TYPE = "boe_oracle"


class OracleModule(nn.Module):
    """Holds the identity embedding table (float64) so `Denoiser.device`/`dtype`/`embed` work unchanged."""

    def __init__(self, vocab_size: int, name: str) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, vocab_size, dtype=torch.float64)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.eye(vocab_size, dtype=torch.float64))
        self.embedding.weight.requires_grad_(False)
        self.config = SimpleNamespace(_name_or_path=name)

    def get_input_embeddings(self) -> nn.Module:
        return self.embedding


class OracleDenoiser(Denoiser):
    """Base class: parses the canvas into soft-evidence factors and turns exact posterior marginals into logits.
    Subclasses implement `posterior(evidence) -> marginals` ([b, n, S] -> [b, n, S], differentiable)."""

    family = "oracle"

    def __init__(self, tokenizer, symbols: str, name: str) -> None:
        vocab = tokenizer.get_vocab()
        self.symbols = symbols
        self.symbol_ids = [vocab[s] for s in symbols]
        self.free_id = vocab[FREE]
        self.separator_id = vocab[SEPARATOR]
        forbidden = [i for i in range(len(vocab)) if i not in set(self.symbol_ids)]
        super().__init__(OracleModule(len(vocab), name), tokenizer, mask_id=tokenizer.mask_token_id,
                         forbidden_ids=forbidden, time_conditioned=True, name=name)

    # ------------------------------------------------------------------ to implement
    def posterior(self, evidence: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Exact marginals p(x_t = s | evidence) [b, n, S] for evidence factors [b, n, S] (float64)."""
        raise NotImplementedError

    def log_evidence(self, evidence: Tensor) -> Tensor:  # pragma: no cover - abstract
        """log sum_x p(x) prod_t evidence_t(x_t) [b]."""
        raise NotImplementedError

    def mode(self, template: str) -> str | None:
        """The exact conditional mode argmax_x p(x | template) where the oracle can find it (None: not known)."""
        return None

    # ------------------------------------------------------------------ contract
    @property
    def max_length(self) -> int | None:
        return None

    @contextlib.contextmanager
    def active_queries(self, active, mode: str = "faithful") -> Iterator:
        """ActiveQueryAttention is a no-op on an oracle (no attention): the gradient is the dense, exact one."""
        if active is None:
            yield None
            return
        from boe_eval.models.aqa import ActiveQueries

        yield active if isinstance(active, ActiveQueries) else ActiveQueries(active)

    def evidence_factors(self, weights: Tensor) -> tuple[Tensor, Tensor]:
        """(template factors psi, slot factors phi) [b, n, S] from one-hot/soft inputs [b, 2n + 1, V]."""
        n = (weights.shape[1] - 1) // 2
        sym = torch.tensor(self.symbol_ids, device=weights.device)
        template, slots = weights[:, :n], weights[:, n + 1 : 2 * n + 1]
        psi = template[..., sym] + template[..., self.free_id : self.free_id + 1]
        phi = slots[..., sym] + slots[..., self.mask_id : self.mask_id + 1]
        return psi, phi

    def _forward(self, input_ids, inputs_embeds, attention_mask, timestep) -> Tensor:
        weights = inputs_embeds if inputs_embeds is not None else self.embed(input_ids)
        weights = weights.to(torch.float64)
        batch, length, vocab = weights.shape
        lengths = (attention_mask.sum(1).tolist() if attention_mask is not None else [length] * batch)
        sym = torch.tensor(self.symbol_ids, device=weights.device)
        logits = torch.full((batch, length, vocab), LOG_ZERO, dtype=torch.float64, device=weights.device)
        logits[..., sym] = 0.0  # unparsable rows and positions: uniform over the symbols
        groups: dict[int, list[int]] = {}
        for row, real in enumerate(int(r) for r in lengths):
            n = (real - 1) // 2
            if real % 2 == 1 and n > 0 and int(weights[row, n].argmax()) == self.separator_id:
                groups.setdefault(n, []).append(row)
        rows_out = []
        for n, rows in groups.items():
            index = torch.tensor(rows, device=weights.device)
            psi, phi = self.evidence_factors(weights[index, : 2 * n + 1])
            marginals = self.posterior(psi * phi)
            slot_logits = torch.log(marginals.clamp_min(1e-300))
            rows_out.append((index, n, slot_logits))
        if not rows_out:
            return logits
        logits = logits.clone()
        for index, n, slot_logits in rows_out:
            block = logits[index]
            block[:, :n, sym] = slot_logits
            block[:, n + 1 : 2 * n + 1, sym] = slot_logits
            logits = logits.index_put((index,), block)
        return logits

    def describe(self) -> dict:
        return {**super().describe(), "oracle": type(self).__name__}

    # ------------------------------------------------------------------ helpers for metrics
    def hard_evidence(self, template: str, sequence: str | None = None) -> Tensor:
        """Evidence [1, n, S] of a template (and optionally a full decoded sequence)."""
        n = len(template)
        ev = torch.ones(1, n, len(self.symbols), dtype=torch.float64)
        for t, ch in enumerate(template):
            if ch != FREE:
                ev[0, t] = 0.0
                ev[0, t, self.symbols.index(ch)] = 1.0
        if sequence is not None:
            for t, ch in enumerate(sequence):
                ev[0, t] *= torch.nn.functional.one_hot(torch.tensor(self.symbols.index(ch)), len(self.symbols))
        return ev

    def conditional_log_prob(self, template: str, sequence: str) -> float:
        """Exact log p(x = sequence | template); -inf outside the support or for a malformed sequence."""
        if len(sequence) != len(template) or any(ch not in self.symbols for ch in sequence):
            return float("-inf")
        with torch.no_grad():
            joint = float(self.log_evidence(self.hard_evidence(template, sequence))[0])
            prior = float(self.log_evidence(self.hard_evidence(template))[0])
        return joint - prior if math.isfinite(joint) else float("-inf")


def write_oracle_dir(folder: Path, kind: str, symbols: str, tensors: dict[str, Tensor], extra: dict | None = None) -> None:
    """An oracle "checkpoint": config.json (model_type boe_oracle), its parameters as model.safetensors, and a
    character tokenizer over the symbols, '.', '=' (plus [PAD], [MASK], [EOS], [UNK])."""
    from safetensors.torch import save_file

    from boe_eval.tiny.tokenizer import build_char_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_type": MODEL_TYPE, "oracle": kind, "symbols": symbols, **(extra or {})}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    build_char_tokenizer(symbols + FREE + SEPARATOR).save_pretrained(str(folder))


def score_response(oracle: OracleDenoiser, template: str, response: str) -> dict[str, float]:
    """Oracle-only metrics of one decoded sequence (T = 0 protocol):
    `valid` 1 if the sequence has positive probability given the template (in the support), else 0;
    `log_prob` the exact log p(x | template) (-inf when invalid: result rows store it as null, so means are over
    valid sequences); `mode_gap` log p(mode | template) - log p(x | template) >= 0 (mode = the exact conditional
    mode where the oracle has one, `mode()`; gaps below 1e-9 are rounding and count as 0), `mode_match` 1 if x is
    that mode string (several sequences may share the mode's probability: `mode_gap` = 0 is the tie-proof test)."""
    log_prob = oracle.conditional_log_prob(template, response.strip())
    out = {"valid": float(math.isfinite(log_prob)), "log_prob": log_prob}
    mode = oracle.mode(template)
    if mode is not None:
        best = oracle.conditional_log_prob(template, mode)
        gap = best - log_prob if math.isfinite(log_prob) else float("inf")
        out["mode_gap"] = 0.0 if abs(gap) < 1e-9 else gap
        out["mode_match"] = float(response.strip() == mode)
    return out


__all__ = ["FREE", "LOG_ZERO", "MODEL_TYPE", "OracleDenoiser", "SEPARATOR", "score_response", "write_oracle_dir"]
