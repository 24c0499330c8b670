"""ActiveQueryAttention (TABES paper section 3.5, eq. 17, eq. 30, Appendix A.3.2-A.3.3).

Inside `active_query_attention(denoiser, active, mode)` the model's forward is unchanged, bit for bit, and
gradients flow only through the attention outputs of the *active query rows* A_t (`active` [B, L] bool):

    Y~_i = m_i Y_i + (1 - m_i) stopgrad(Y_i)                                   (eq. 30)

where Y is the output of a self-attention block (post-attention projection) and m_i = 1 iff i is in A_t.
Two implementations give the same gradients:

- `mode="faithful"`: eq. 30 as written. A forward hook on every attention output projection (BERT
  `attention.output.dense`, ModernBERT `attn.Wo`, LLaDA `attn_out`, Dream `self_attn.o_proj`, MDLM `attn_out`)
  passes Y through a gate whose backward zeroes the rows outside A_t. It saves no FLOPs: autograd still runs
  the attention backward for all L query rows (the zero rows are multiplied like any other).
- `mode="efficient"`: the attention kernel call itself, `torch.nn.functional.scaled_dot_product_attention`,
  is replaced for the duration of the forward by `_ActiveQuerySDPA`: its forward is the original kernel
  call on the same tensors under no_grad (so the output is the same bits), and its backward recomputes
  attention *for the active query rows only*, with grad, against all L keys/values and back-propagates
  through that: O(|A_t| L d) instead of O(L^2 d) (eq. 17, A.3.3). Rows outside A_t get no query gradient
  and contribute nothing to the key/value gradients, which is exactly eq. 30 (the output projection is
  position-wise, so stopping the gradient before or after it is the same).

Why not transformers' `AttentionInterface`: in transformers 4.57 neither BERT (its own eager/SDPA
`BertSelfAttention` classes) nor ModernBERT (its own `MODERNBERT_ATTENTION_FUNCTION` table) routes through
`ALL_ATTENTION_FUNCTIONS`, and LLaDA/Dream remote code calls `F.scaled_dot_product_attention` directly. A new
entry registered there would never be called (and models that do route through it would also need a matching
`AttentionMaskInterface` entry, or their padding mask would be silently dropped). Intercepting the SDPA call
covers every one of these architectures, including models that do use `AttentionInterface` with "sdpa"
(transformers' `sdpa_attention_forward` calls `torch.nn.functional.scaled_dot_product_attention`), without
touching mask preparation. The interception is checked: each forward must make exactly one intercepted
kernel call per attention layer, else a clear error says to use the faithful mode (e.g. eager attention).

The active rows may be set *after* the forward and before the backward (`ActiveQueries.rows`): BoE's fused
mode runs one forward for both the current-step prediction and the surrogate (LLaDA is time-independent) and
only then knows its candidate set C_t = A_t.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from boe_eval.errors import ConfigError

AQA_MODES = ("faithful", "efficient")


@dataclass
class ActiveQueries:
    """The active query set A_t as a [B, L] bool mask over query rows; may be filled in after the forward
    (it is read by the backward)."""

    rows: Tensor | None = None

    def rows_for_backward(self, batch: int, length: int, device: torch.device) -> Tensor:
        if self.rows is None:
            raise RuntimeError("ActiveQueryAttention: set ActiveQueries.rows before running the backward")
        if tuple(self.rows.shape) != (batch, length):
            raise RuntimeError(
                f"ActiveQueryAttention: active rows have shape {tuple(self.rows.shape)}, the attention has {batch} "
                f"sequences of {length} query rows"
            )
        return self.rows.to(device=device, dtype=torch.bool)


def attention_output_projections(denoiser) -> list[nn.Module]:
    """The post-attention projection of every layer (where eq. 30 applies), in layer order.

    Denoisers with their own list (`attention_output_modules()`: LLaDA, Dream, MDLM) give it; for
    `AutoModelForMaskedLM` models: BERT-family `*SelfOutput.dense` (BERT, RoBERTa, ...) and ModernBERT's
    `ModernBertAttention.Wo`.
    """
    own = getattr(denoiser, "attention_output_modules", None)
    if callable(own):
        modules = list(own())
    else:
        modules = []
        for module in denoiser.model.modules():
            kind = type(module).__name__
            if kind.endswith("SelfOutput") and isinstance(getattr(module, "dense", None), nn.Linear):
                modules.append(module.dense)
            elif kind == "ModernBertAttention":
                modules.append(module.Wo)
    if not modules:
        raise ConfigError(
            f"ActiveQueryAttention does not know where the attention output projection is in "
            f"{type(denoiser.model).__name__}: supported are BERT-family, ModernBERT, LLaDA, Dream and MDLM models"
        )
    return modules


def prediction_query_rows(denoiser, positions: Tensor) -> Tensor:
    """Query rows [B, L] whose outputs carry the predictions of the token `positions` [B, L].

    Identity except for Dream, whose row i predicts token i + 1 (the Denoiser undoes the shift, token j is
    read from row j - 1; token 0 from row 0).
    """
    if getattr(denoiser, "family", "") != "dream":
        return positions
    rows = torch.zeros_like(positions)
    rows[:, :-1] = positions[:, 1:]
    rows[:, 0] |= positions[:, 0]
    return rows


# ------------------------------------------------------------------------------------------ faithful


class _RowGradientGate(torch.autograd.Function):
    """Identity in the forward (a copy, same bits); the backward keeps the gradient of the active rows only:
    eq. 30, Y~ = m * Y + (1 - m) * stopgrad(Y)."""

    @staticmethod
    def forward(ctx, output: Tensor, active: ActiveQueries) -> Tensor:
        ctx.active = active
        return output.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        batch, length = grad.shape[0], grad.shape[1]
        rows = ctx.active.rows_for_backward(batch, length, grad.device)
        return grad * rows.unsqueeze(-1).to(grad.dtype), None


@contextlib.contextmanager
def _faithful(denoiser, active: ActiveQueries) -> Iterator[None]:
    def gate(_module, _args, output):
        if isinstance(output, Tensor) and torch.is_grad_enabled() and output.requires_grad:
            return _RowGradientGate.apply(output, active)
        return output

    handles = [module.register_forward_hook(gate) for module in attention_output_projections(denoiser)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# ------------------------------------------------------------------------------------------ efficient


def _rows_of_mask(mask: Tensor | None, batch_index: int, rows: Tensor, query_length: int) -> Tensor | None:
    """The part of an SDPA `attn_mask` (broadcastable to [B, H, Lq, Lk]) that applies to `rows` of one sequence."""
    if mask is None:
        return None
    if mask.dim() == 4 and mask.shape[0] > 1:
        mask = mask[batch_index : batch_index + 1]
    if mask.dim() >= 2 and mask.shape[-2] == query_length and query_length > 1:
        mask = mask.index_select(-2, rows)
    return mask


class _ActiveQuerySDPA(torch.autograd.Function):
    """SDPA whose backward covers the active query rows only (eq. 17): forward = the original kernel call."""

    @staticmethod
    def forward(ctx, query, key, value, attn_mask, scale, enable_gqa, active, kernel):
        with torch.no_grad():
            output = kernel(query, key, value, attn_mask=attn_mask, dropout_p=0.0, is_causal=False, scale=scale,
                            **({"enable_gqa": True} if enable_gqa else {}))
        ctx.save_for_backward(query, key, value)
        ctx.attn_mask, ctx.scale, ctx.enable_gqa, ctx.active, ctx.kernel = attn_mask, scale, enable_gqa, active, kernel
        return output

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        query, key, value = ctx.saved_tensors
        batch, query_length = query.shape[0], query.shape[-2]
        active = ctx.active.rows_for_backward(batch, query_length, query.device)
        grad_query = torch.zeros_like(query) if ctx.needs_input_grad[0] else None
        grad_key = torch.zeros_like(key) if ctx.needs_input_grad[1] else None
        grad_value = torch.zeros_like(value) if ctx.needs_input_grad[2] else None
        extra = {"enable_gqa": True} if ctx.enable_gqa else {}
        for b in range(batch):
            rows = active[b].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            with torch.enable_grad():
                q = query[b : b + 1].index_select(-2, rows).detach().requires_grad_(ctx.needs_input_grad[0])
                k = key[b : b + 1].detach().requires_grad_(ctx.needs_input_grad[1])
                v = value[b : b + 1].detach().requires_grad_(ctx.needs_input_grad[2])
                mask = _rows_of_mask(ctx.attn_mask, b, rows, query_length)
                out = ctx.kernel(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False, scale=ctx.scale, **extra)
                wanted = [t for t in (q, k, v) if t.requires_grad]
                grads = iter(torch.autograd.grad(out, wanted, grad_output[b : b + 1].index_select(-2, rows)))
            if grad_query is not None:
                grad_query[b : b + 1].index_copy_(-2, rows, next(grads))
            if grad_key is not None:
                grad_key[b : b + 1] = next(grads)
            if grad_value is not None:
                grad_value[b : b + 1] = next(grads)
        return grad_query, grad_key, grad_value, None, None, None, None, None


@contextlib.contextmanager
def _efficient(denoiser, active: ActiveQueries) -> Iterator[None]:
    kernel: Callable[..., Tensor] = F.scaled_dot_product_attention
    layers = len(attention_output_projections(denoiser))
    calls = [0]

    def active_query_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                          enable_gqa=False):
        calls[0] += 1
        if not torch.is_grad_enabled() or not (query.requires_grad or key.requires_grad or value.requires_grad):
            extra = {"enable_gqa": True} if enable_gqa else {}
            return kernel(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                          scale=scale, **extra)
        if dropout_p or is_causal:
            raise RuntimeError(
                f"efficient ActiveQueryAttention needs bidirectional attention without dropout "
                f"(got dropout_p={dropout_p}, is_causal={is_causal}): use aqa_mode=faithful"
            )
        return _ActiveQuerySDPA.apply(query, key, value, attn_mask, scale, enable_gqa, active, kernel)

    def count_reset(_module, _args):
        calls[0] = 0

    def count_check(_module, _args, _output):
        if calls[0] != layers:
            raise RuntimeError(
                f"efficient ActiveQueryAttention intercepted {calls[0]} attention kernel calls for {layers} attention "
                f"layers of {type(denoiser.model).__name__}: the model does not compute attention with "
                "torch.nn.functional.scaled_dot_product_attention (e.g. attn_implementation='eager'); "
                "load it with SDPA attention or use aqa_mode=faithful"
            )

    pre = denoiser.model.register_forward_pre_hook(count_reset)
    post = denoiser.model.register_forward_hook(count_check)
    F.scaled_dot_product_attention = active_query_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = kernel
        pre.remove()
        post.remove()


@contextlib.contextmanager
def active_query_attention(
    denoiser, active: Tensor | ActiveQueries | None, mode: str = "faithful"
) -> Iterator[ActiveQueries]:
    """Run the denoiser's forwards inside this context to restrict their backward to the active query rows
    (eq. 30). `active` is a [B, L] bool mask, or an `ActiveQueries` whose rows are set before the backward.
    The forward logits are unchanged bit for bit in both modes. Yields the `ActiveQueries` in use."""
    if mode not in AQA_MODES:
        raise ConfigError(f"aqa_mode={mode!r} is unknown: choose one of {', '.join(AQA_MODES)}")
    holder = active if isinstance(active, ActiveQueries) else ActiveQueries(active)
    implementation = _faithful if mode == "faithful" else _efficient
    with implementation(denoiser, holder):
        yield holder


__all__ = [
    "AQA_MODES",
    "ActiveQueries",
    "active_query_attention",
    "attention_output_projections",
    "prediction_query_rows",
]
