"""Mask injection (issue 19): models whose code drops the attention mask (the LLaDA stand-in, faithful to the hub
code) get a real key-padding mask in the attention kernel, decided by the padding probe, so prompts of any length
share a batch with the tokens of batch size 1; where injection does not reach the attention, equal-length batches.
Expected values: the unpadded row alone, a hand-built mask, and attention computed here from its definition."""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from fixtures.models import llada, llada_dir, mdlm, mdlm_dir  # noqa: F401  (pytest fixtures)

from boe_eval.decoding import DecodeConfig, generate_batched
from boe_eval.models import LLaDADenoiser, load_denoiser
from boe_eval.models.mask_injection import combine_masks, injected_attention_mask
from boe_eval.models.padding_probe import honours_padding_mask, settle_padding_mask
from boe_eval.samplers import build_sampler

#: 8 prompts of 8 different lengths (1 to 29 characters)
TEXTS = ["a", "hi!", "the cat", "12 + 30 = ", "quick brown fox", "what is 7 * 8?", "a longer prompt here, ok",
         "the longest of the eight prompts"]


def prompts_of(den):
    prompts = [den.tokenizer(t, add_special_tokens=False).input_ids for t in TEXTS]
    assert len({len(p) for p in prompts}) == len(TEXTS)
    return prompts


@contextmanager
def batch_sizes_seen(den):
    """Record the batch size of every forward of the underlying model."""
    seen: list[int] = []
    handle = den.model.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append((kwargs.get("input_ids") if kwargs.get("input_ids") is not None
                                              else kwargs["inputs_embeds"]).shape[0]), with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def decode(den, batch_size, temperature, sampler="confidence"):
    config = DecodeConfig(gen_length=8, steps=4, block_length=4, temperature=temperature)
    out = generate_batched(den, prompts_of(den), build_sampler(sampler), config, seeds=[11 * i + 3 for i in range(8)],
                           batch_size=batch_size, progress=False)
    return [r.tokens for r in out]


def test_the_probe_injects_the_mask_into_llada_and_records_it(llada):
    assert llada.padding_mask == "injected" and llada.honours_padding_mask and llada.inject_padding_mask
    assert llada.describe()["padding_mask"] == "injected"
    llada.inject_padding_mask = False  # the model's own code: the probe fails
    try:
        assert honours_padding_mask(llada) is False
    finally:
        llada.inject_padding_mask = True
    assert settle_padding_mask(llada) == "injected"


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_mixed_lengths_batch_8_equals_batch_1_token_for_token_on_llada(llada, temperature):
    with batch_sizes_seen(llada) as single:
        one = decode(llada, 1, temperature)
    with batch_sizes_seen(llada) as batched:
        eight = decode(llada, 8, temperature)
    assert set(single) == {1} and set(batched) == {8}  # one batch of all 8 lengths
    assert eight == one
    assert all(llada.mask_id not in t for t in one)


def test_without_injection_the_same_batch_would_change_tokens(llada):
    """The premise: LLaDA's own code attends to the padding, so the injected mask is what keeps the tokens."""
    llada.inject_padding_mask = False
    llada.honours_padding_mask = True  # pretend, to force a mixed batch through
    try:
        with torch.no_grad():
            ids = torch.tensor([prompts_of(llada)[2] + [llada.mask_id] * 8 + [llada.pad_id] * 12])
            mask = torch.ones_like(ids)
            mask[:, -12:] = 0
            padded = llada.logits(ids, attention_mask=mask)[:, :-12]
            alone = llada.logits(ids[:, :-12])
        assert not torch.allclose(padded, alone, atol=1e-3)
    finally:
        settle_padding_mask(llada)


class FlashLikeLLaDA(LLaDADenoiser):
    """A LLaDA whose attention does not go through F.scaled_dot_product_attention (as with a flash-attention
    kernel): injection cannot reach it."""

    def _forward(self, input_ids, inputs_embeds, attention_mask, timestep):
        injected = F.scaled_dot_product_attention

        def own_kernel(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            return scores.softmax(-1) @ v

        F.scaled_dot_product_attention = own_kernel
        try:
            return super()._forward(input_ids, inputs_embeds, attention_mask, timestep)
        finally:
            F.scaled_dot_product_attention = injected


def test_where_injection_does_not_hold_the_probe_falls_back_to_equal_lengths(llada):
    flash = FlashLikeLLaDA(llada.model, llada.tokenizer, mask_id=llada.mask_id, honours_padding_mask=False)
    assert settle_padding_mask(flash) == "ignored"
    assert not flash.honours_padding_mask and not flash.inject_padding_mask
    assert flash.describe()["padding_mask"] == "ignored"
    with batch_sizes_seen(flash) as seen:
        decode(flash, 8, 0.0)
    assert set(seen) == {1}  # 8 different lengths: 8 batches of one


def test_injection_holds_for_the_mdlm_stand_in_too(mdlm):
    assert mdlm.padding_mask == "injected"


def test_combine_masks_against_hand_built_masks():
    q = torch.zeros(1, 1, 3, 2)
    k = torch.zeros(1, 1, 3, 2)
    allowed = torch.tensor([[True, True, False]])[:, None, None, :]
    assert combine_masks(None, allowed, False, q, k)[0, 0].tolist() == [[True, True, False]]
    own = torch.tensor([[True, False, True], [True, True, True], [False, True, True]])
    assert combine_masks(own, allowed, False, q, k)[0, 0].tolist() == [[True, False, False], [True, True, False],
                                                                       [False, True, False]]
    bias = torch.tensor([[0.0, -1.0, 2.0]] * 3)
    inf = float("-inf")
    assert combine_masks(bias, allowed, False, q, k)[0, 0].tolist() == [[0.0, -1.0, inf]] * 3
    assert combine_masks(None, allowed, True, q, k)[0, 0].tolist() == [[True, False, False], [True, True, False],
                                                                      [True, True, False]]


def test_a_general_query_key_mask_gives_the_attention_of_its_definition():
    """[B, 1, Q, K] mask: each query row attends to its own set of keys (WINO's shadow block needs this)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    allowed = torch.rand(2, 1, 5, 5, generator=g) < 0.6
    allowed[..., 0] = True
    scores = (q @ k.transpose(-1, -2)) / 2.0  # sqrt(head_dim = 4)
    expected = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    with injected_attention_mask(allowed) as record:
        got = F.scaled_dot_product_attention(q, k, v)
    assert record.calls == 1
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    with injected_attention_mask(allowed), pytest.raises(RuntimeError, match="does not fit"):
        F.scaled_dot_product_attention(q[:, :, :4], k[:, :, :4], v[:, :, :4])


def test_restricted_attention_on_llada_splits_a_canvas_into_two_independent_halves(llada):
    """Two halves that may only attend to themselves give the logits of each half alone (LLaDA's RoPE is relative,
    so the second half's shifted positions do not matter)."""
    ids = torch.tensor([prompts_of(llada)[7][:20]])
    allowed = torch.zeros(1, 1, 20, 20, dtype=torch.bool)
    allowed[..., :12, :12] = True
    allowed[..., 12:, 12:] = True
    with torch.no_grad():
        with llada.restricted_attention(allowed) as record:
            split = llada.logits(ids)
        first, second = llada.logits(ids[:, :12]), llada.logits(ids[:, 12:])
    assert record.calls == len(llada.attention_output_modules())
    torch.testing.assert_close(split[:, :12], first, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(split[:, 12:], second, rtol=1e-4, atol=1e-4)


def test_restricted_attention_refuses_a_model_it_cannot_reach(llada):
    flash = FlashLikeLLaDA(llada.model, llada.tokenizer, mask_id=llada.mask_id)
    with pytest.raises(RuntimeError, match="intercepted no attention call"):
        with torch.no_grad(), flash.restricted_attention(torch.ones(1, 1, 4, 4, dtype=torch.bool)):
            flash.logits(torch.tensor([[5, 6, 7, 8]]))


def test_bfloat16_llada_gets_the_injected_mask(llada_dir):
    assert load_denoiser(llada_dir, dtype="bfloat16").padding_mask == "injected"


def test_restricted_attention_composes_with_the_injected_padding_mask(llada):
    """The general mask and the padding mask both hold at once: the second half of a right-padded row attends to
    its own real keys only, as if it stood alone."""
    ids = torch.tensor([prompts_of(llada)[7][:20] + [llada.pad_id] * 6])
    padding = torch.ones_like(ids)
    padding[:, 20:] = 0
    allowed = torch.zeros(1, 1, 26, 26, dtype=torch.bool)
    allowed[..., :12, :12] = True
    allowed[..., 12:, 12:] = True  # includes the padded keys 20..25, which the padding mask must remove
    with torch.no_grad():
        with llada.restricted_attention(allowed):
            split = llada.logits(ids, attention_mask=padding)
        second = llada.logits(ids[:, 12:20])
    torch.testing.assert_close(split[:, 12:20], second, rtol=1e-4, atol=1e-4)
