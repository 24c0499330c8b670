"""Analytic forward FLOPs of a denoiser call (issue 15 item 2: compute axes where calls differ in cost).

A transformer forward over a row of n real tokens whose output head runs on h of them costs, counting the matrix
products only (as `torch.utils.flop_counter.FlopCounterMode` does; norms, activations and softmax are left out):

    FLOPs = 2 P_tok n  +  2 P_seq  +  4 A q k  +  2 P_head h

- P_tok: sum of in x out over the Linear layers applied at every position (attention and MLP projections; the
  head's own transform in BERT), P_seq: those applied once per sequence (MDLM's time conditioning),
- A: sum over attention layers of heads x head_dim (query-key scores and the attention-weighted values, 2 x 2 A
  FLOPs per query-key pair); q = query positions, k = key positions (both n without a KV cache),
- P_head: in x out of the output head (d x V), applied to the h positions whose logits are asked for (the step
  window, `Denoiser.logits(logits_from=...)`).

The coefficients are read off the model itself by one small probe forward (`flop_model`): every Linear records
how often it ran per position, every `scaled_dot_product_attention` call its query heads x head_dim; the head is
the Linear that outputs the vocabulary (a tied head applied with `F.linear`, as LLaDA's `weight_tying`, is the
embedding matrix). tests/test_flops.py checks the formula against FlopCounterMode on the tiny models.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PROBE_LENGTH = 7


@dataclass(frozen=True)
class FlopModel:
    per_token: int  #: P_tok
    per_sequence: int  #: P_seq
    head: int  #: P_head
    attention: int  #: A

    def forward_flops(self, queries: Tensor, keys: Tensor, head_positions: Tensor) -> Tensor:
        """FLOPs [b] (float64) of one forward per row: `queries`, `keys`, `head_positions` are per-row counts."""
        q, k, h = (t.double() for t in (queries, keys, head_positions))
        return 2 * self.per_token * q + 2 * self.per_sequence + 4 * self.attention * q * k + 2 * self.head * h


def flop_model(denoiser) -> FlopModel | None:
    """The FLOP coefficients of `denoiser` (cached on it), or None when the model has no Linear layers to count
    (exact oracles) or cannot run the probe (a scripted test model of fixed length): its rows then carry no FLOPs."""
    cached = getattr(denoiser, "_flop_model", False)
    if cached is not False:
        return cached
    try:  # on a shallow copy: the probe call leaves the denoiser's own attributes (a scripted call counter) alone
        model = _probe(copy.copy(denoiser))
    except Exception:  # noqa: BLE001  (FLOPs are reported as unknown, never guessed)
        model = None
    denoiser._flop_model = model
    return model


@torch.no_grad()
def _probe(denoiser) -> FlopModel | None:
    modules = getattr(denoiser, "model", None)
    if not isinstance(modules, nn.Module):
        return None
    linears = [m for m in modules.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    vocab = denoiser.vocab_size
    counts = {"tok": 0, "seq": 0, "head": 0, "attention": 0}

    def record(module, args, _output):
        rows = args[0].numel() // module.in_features  # positions (or sequences) it was applied to
        size = module.in_features * module.out_features
        if module.out_features == vocab and rows == PROBE_LENGTH:
            counts["head"] += size
        elif rows == PROBE_LENGTH:
            counts["tok"] += size
        else:
            counts["seq"] += size * rows

    kernel = F.scaled_dot_product_attention

    def sdpa(query, key, value, *args, **kwargs):
        counts["attention"] += int(query.shape[-3]) * int(query.shape[-1]) if query.dim() >= 3 else int(query.shape[-1])
        return kernel(query, key, value, *args, **kwargs)

    handles = [m.register_forward_hook(record) for m in linears]
    F.scaled_dot_product_attention = sdpa
    try:
        ids = torch.full((1, PROBE_LENGTH), denoiser.mask_id, dtype=torch.long, device=denoiser.device)
        timestep = torch.full((1,), 0.5, device=denoiser.device) if denoiser.time_conditioned else None
        denoiser.logits(ids, attention_mask=torch.ones_like(ids), timestep=timestep)
    finally:
        F.scaled_dot_product_attention = kernel
        for handle in handles:
            handle.remove()
    if not counts["head"]:
        counts["head"] = int(denoiser.embedding_matrix.numel())  # tied head applied with F.linear
    return FlopModel(per_token=counts["tok"], per_sequence=counts["seq"], head=counts["head"],
                     attention=counts["attention"])


__all__ = ["FlopModel", "flop_model"]
