"""ActiveQueryAttention (paper eq. 30, A.3.2): forward unchanged bit for bit, gradients equal to a reference made
here with explicit `detach` on the inactive rows of every attention output projection, the efficient form equal
to the faithful form, and the efficient backward really doing fewer FLOPs."""

from __future__ import annotations

import pytest
import torch
from fixtures.models import dream_dir, llada_dir, mdlm_dir, modernbert_dir  # noqa: F401  (pytest fixtures)
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from boe_eval.errors import ConfigError
from boe_eval.models import Denoiser, load_denoiser
from boe_eval.models.aqa import ActiveQueries, active_query_attention, prediction_query_rows

#: where each architecture's post-attention projection lives, written out here (not taken from boe_eval)
OUTPUT_PROJECTIONS = {
    "bert": lambda m: [layer.attention.output.dense for layer in m.bert.encoder.layer],
    "modernbert": lambda m: [layer.attn.Wo for layer in m.model.layers],
    "llada": lambda m: [block.attn_out for block in m.model.transformer.blocks],
    "dream": lambda m: [layer.self_attn.o_proj for layer in m.model.layers],
    "mdlm": lambda m: [block.attn_out for block in m.backbone.blocks],
}
ARCHITECTURES = {
    "bert": "tiny_bert_dir",
    "modernbert": "modernbert_dir",
    "llada": "llada_dir",
    "dream": "dream_dir",
    "mdlm": "mdlm_dir",
}


@pytest.fixture(scope="module")
def float64_models(request):
    """name -> float64 denoiser of every architecture (built lazily)."""
    cache: dict[str, Denoiser] = {}

    def get(name: str) -> Denoiser:
        if name not in cache:
            cache[name] = load_denoiser(request.getfixturevalue(ARCHITECTURES[name]), dtype=torch.float64)
        return cache[name]

    return get


def _inputs(denoiser: Denoiser, batch: int = 2, length: int = 14, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (batch, length), generator=g)
    ids[:, length // 2 :: 3] = denoiser.mask_id
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    if denoiser.honours_padding_mask and batch > 1:
        attention_mask[1, length - 4 :] = 0  # a padded row: the mask must reach the intercepted kernel
    timestep = torch.tensor([0.6, 0.3][:batch], dtype=torch.float64) if denoiser.time_conditioned else None
    active = torch.rand(batch, length, generator=g) < 0.35
    active[:, 0] = True
    weights = torch.randn(batch, length, denoiser.vocab_size, generator=g, dtype=torch.float64)
    weights = weights * attention_mask.unsqueeze(-1)  # padding's own outputs are never read
    return ids, attention_mask, timestep, active, weights


def _forward_and_gradient(denoiser, ids, attention_mask, timestep, weights, context=None):
    """logits (detached) and d(sum weights * logits)/d(input embeddings)."""
    inputs = denoiser.embed(ids).detach().requires_grad_(True)
    with context if context is not None else torch.enable_grad():
        logits = denoiser.logits(inputs_embeds=inputs, attention_mask=attention_mask, timestep=timestep)
    (gradient,) = torch.autograd.grad((logits * weights).sum(), inputs)
    return logits.detach(), gradient


class _DetachInactiveRows:
    """Reference eq. 30: Y~ = where(active, Y, Y.detach()) on each listed projection output."""

    def __init__(self, modules, active):
        self.modules, self.active = modules, active

    def __enter__(self):
        gate = lambda _m, _a, y: torch.where(self.active.unsqueeze(-1), y, y.detach())  # noqa: E731
        self.handles = [m.register_forward_hook(gate) for m in self.modules]

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_forward_identical_and_gradients_equal_detach_reference(name, float64_models):
    denoiser = float64_models(name)
    ids, attention_mask, timestep, active, weights = _inputs(denoiser)
    with torch.no_grad():
        plain_no_grad = denoiser.logits(ids, attention_mask=attention_mask, timestep=timestep)
    plain, dense_gradient = _forward_and_gradient(denoiser, ids, attention_mask, timestep, weights)
    reference = _DetachInactiveRows(OUTPUT_PROJECTIONS[name](denoiser.model), active)
    _, reference_gradient = _forward_and_gradient(denoiser, ids, attention_mask, timestep, weights, reference)
    faithful, faithful_gradient = _forward_and_gradient(
        denoiser, ids, attention_mask, timestep, weights, active_query_attention(denoiser, active, "faithful")
    )
    efficient, efficient_gradient = _forward_and_gradient(
        denoiser, ids, attention_mask, timestep, weights, active_query_attention(denoiser, active, "efficient")
    )
    assert torch.equal(plain, plain_no_grad)
    assert torch.equal(faithful, plain)
    assert torch.equal(efficient, plain)
    torch.testing.assert_close(faithful_gradient, reference_gradient, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(efficient_gradient, faithful_gradient, rtol=1e-9, atol=1e-11)
    # the restriction is real: the dense gradient differs
    assert not torch.allclose(dense_gradient, faithful_gradient, rtol=1e-3, atol=1e-6)
    # the real rows of the padded sequence are unaffected by its padding (the mask reached the kernel)
    if denoiser.honours_padding_mask:
        real = int(attention_mask[1].sum())
        _, alone = _forward_and_gradient(
            denoiser, ids[1:, :real], None, None if timestep is None else timestep[1:], weights[1:, :real],
            active_query_attention(denoiser, active[1:, :real], "efficient"),
        )
        torch.testing.assert_close(efficient_gradient[1:, :real], alone, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("mode", ["faithful", "efficient"])
def test_active_rows_may_be_set_after_the_forward(mode, float64_models):
    denoiser = float64_models("llada")
    ids, attention_mask, timestep, active, weights = _inputs(denoiser)
    _, upfront = _forward_and_gradient(denoiser, ids, attention_mask, timestep, weights,
                                       active_query_attention(denoiser, active, mode))
    inputs = denoiser.embed(ids).detach().requires_grad_(True)
    with active_query_attention(denoiser, ActiveQueries(), mode) as holder:
        logits = denoiser.logits(inputs_embeds=inputs, attention_mask=attention_mask)
    holder.rows = active  # the fused BoE step knows C_t only after this forward
    (later,) = torch.autograd.grad((logits * weights).sum(), inputs)
    torch.testing.assert_close(later, upfront, rtol=0, atol=0)

    with active_query_attention(denoiser, ActiveQueries(), mode):
        logits = denoiser.logits(inputs_embeds=inputs, attention_mask=attention_mask)
    with pytest.raises(RuntimeError, match="set ActiveQueries.rows before"):
        torch.autograd.grad((logits * weights).sum(), inputs)


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flops(grad_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


#: FlopCounterMode knows the CUDA SDPA kernels only; count the CPU flash kernel with the same formulas
CPU_SDPA_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flops,
}


def _backward_flops(denoiser, ids, attention_mask, weights, context) -> int:
    inputs = denoiser.embed(ids).detach().requires_grad_(True)
    with context:
        logits = denoiser.logits(inputs_embeds=inputs, attention_mask=attention_mask)
    counter = FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS)
    with counter:
        torch.autograd.grad((logits * weights).sum(), inputs)
    return counter.get_total_flops()


def test_efficient_backward_counts_fewer_flops_and_faithful_saves_none(tiny_bert_dir):
    """Eq. 17: the attention part of the backward scales with |A_t| L d instead of L^2 d. The stop-gradient
    alone (faithful form) saves nothing: autograd still multiplies the zero rows."""
    import contextlib

    denoiser = load_denoiser(tiny_bert_dir)
    length, d, layers = 128, 32, 2  # tiny_bert: hidden 32, 2 layers
    ids = torch.randint(5, 60, (1, length), generator=torch.Generator().manual_seed(1))
    weights = torch.randn(1, length, denoiser.vocab_size, generator=torch.Generator().manual_seed(2))
    active = torch.zeros(1, length, dtype=torch.bool)
    active[0, :16] = True
    dense = _backward_flops(denoiser, ids, None, weights, contextlib.nullcontext())
    faithful = _backward_flops(denoiser, ids, None, weights, active_query_attention(denoiser, active, "faithful"))
    efficient = _backward_flops(denoiser, ids, None, weights, active_query_attention(denoiser, active, "efficient"))
    assert faithful == dense
    # per layer, 2 FLOPs per multiply-add: the dense flash backward makes 5 matmuls of L x L x d (S = QK^T again,
    # dP, dV, dQ, dK); the efficient one recomputes the active rows' forward (2 matmuls of |A| x L x d) and runs
    # the same 5-matmul backward on them
    active_rows = 16
    predicted_saving = layers * (5 * 2 * length * length * d - 7 * 2 * active_rows * length * d)
    assert dense - efficient == predicted_saving


def test_efficient_mode_refuses_models_without_sdpa(tiny_bert_dir):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert_dir, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    denoiser = Denoiser(model, tokenizer, mask_id=tokenizer.mask_token_id)
    ids = torch.randint(5, 60, (1, 10))
    inputs = denoiser.embed(ids).detach().requires_grad_(True)
    active = torch.ones(1, 10, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="aqa_mode=faithful"):
        with active_query_attention(denoiser, active, "efficient"):
            denoiser.logits(inputs_embeds=inputs)
    with active_query_attention(denoiser, active, "faithful"):  # the faithful form works for eager attention
        logits = denoiser.logits(inputs_embeds=inputs)
    with torch.no_grad():
        assert torch.equal(logits.detach(), denoiser.logits(ids))


def test_unknown_mode_is_a_config_error(tiny_bert):
    with pytest.raises(ConfigError, match="aqa_mode='sparse' is unknown: choose one of faithful, efficient"):
        with active_query_attention(tiny_bert, torch.ones(1, 4, dtype=torch.bool), "sparse"):
            pass


def test_denoiser_context_manager_passes_the_mode(float64_models):
    denoiser = float64_models("bert")
    ids, attention_mask, timestep, active, weights = _inputs(denoiser)
    _, via_denoiser = _forward_and_gradient(denoiser, ids, attention_mask, timestep, weights,
                                            denoiser.active_queries(active, mode="efficient"))
    _, direct = _forward_and_gradient(denoiser, ids, attention_mask, timestep, weights,
                                      active_query_attention(denoiser, active, "faithful"))
    torch.testing.assert_close(via_denoiser, direct, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", ["bert", "llada"])
def test_candidate_only_active_set_zeroes_the_gradient_of_the_remaining_entropy(name, float64_models):
    """Why BoE refuses active_set='candidates' with objective='remaining': with A_t = C_t the entropy of the
    remaining masked slots cannot reach a candidate's embedding (eq. 30 detaches their attention rows), so
    g_i = 0 exactly, while the dense gradient is not 0."""
    denoiser = float64_models(name)
    ids, attention_mask, timestep, _, _ = _inputs(denoiser, batch=1)
    masked = ids == denoiser.mask_id
    candidates = masked & (torch.arange(ids.shape[1]) % 2 == 0)
    remaining = masked & ~candidates
    assert candidates.any() and remaining.any()

    def gradient(context):
        inputs = denoiser.embed(ids).detach().requires_grad_(True)
        with context:
            log_probs = torch.log_softmax(denoiser.logits(inputs_embeds=inputs), -1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        (g,) = torch.autograd.grad((entropy * remaining).sum(), inputs)
        return g[candidates]

    import contextlib

    assert gradient(contextlib.nullcontext()).abs().max() > 1e-6
    for mode in ("faithful", "efficient"):
        assert torch.count_nonzero(gradient(active_query_attention(denoiser, candidates, mode))) == 0


def test_dream_objective_rows_are_shifted_by_one(float64_models):
    dream = float64_models("dream")
    positions = torch.tensor([[False, False, True, True, False, True]])
    assert prediction_query_rows(dream, positions).tolist() == [[False, True, True, False, True, False]]
    assert torch.equal(prediction_query_rows(float64_models("bert"), positions), positions)
