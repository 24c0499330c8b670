"""WINO (`boe_eval/samplers/wino.py`) and the 4-D attention mask capability it needs: parity with a restatement of
the official `decoding_wino` (Kamichanw/d2Cache `src/generation/wino_official.py`; same tokens, same NFE) on a tiny
random BERT and the LLaDA and Dream stand-ins, the 4-D-mask forwards checked against plain forwards of canvases
built by hand, a hand-computed step, and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from boe_eval.decoding.loop import DecodeConfig, generate
from boe_eval.errors import ConfigError
from boe_eval.harness.evaluate import check_sampler_fits_model
from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import load_denoiser
from boe_eval.samplers import build_sampler
from boe_eval.samplers.wino import shadow_inputs
from fixtures.models import dream, dream_dir, llada, llada2_dir, llada_dir, llada_moe, llada_moe_dir  # noqa: F401  (pytest fixtures)
from test_samplers_baselines import PROMPTS, encode, letters, run


def wino_reference(denoiser, prompt, mask_id, gen_length, block_length, threshold, threshold_back):
    """`decoding_wino` for one prompt, restated on the harness's model call (`masked_logits`, forbidden ids at -inf):
    canvas + shadow block, the ~eye mask, the 0.7 write cap, the `last_accept` remask cap. For Dream (prediction lag
    1, docs/samplers/wino.md "Dream") the shadow has one column more in front, the token before the block at its
    position, and the shadow query at p - 1 is the one that cannot see slot p; the verdicts are read, as in the
    reference, from the last `block_length` columns."""
    forbidden = list(denoiser.forbidden_ids)
    lag = denoiser.prediction_lag
    p0, shadow = len(prompt), block_length + lag
    x = torch.full((1, p0 + gen_length + shadow), mask_id, dtype=torch.long)
    x[0, :p0] = torch.tensor(prompt)
    calls = 0
    for nb in range(gen_length // block_length):
        lo, hi = p0 + nb * block_length, p0 + (nb + 1) * block_length
        if lag:
            x[0, p0 + gen_length] = x[0, lo - 1]
        mask_index = x == mask_id
        mask_index[:, hi:] = False
        unmask = torch.zeros_like(mask_index)
        unmask[:, -block_length:] = ~mask_index[:, lo:hi]
        position_ids = torch.cat([torch.arange(p0 + gen_length), torch.arange(lo - lag, hi)])[None]
        attention = torch.ones(1, 1, x.shape[1], x.shape[1], dtype=torch.bool)
        attention[:, :, :, -shadow:] = False
        attention[:, :, -shadow:, -shadow:] = True
        attention[:, :, -shadow:, lo:hi] = ~torch.eye(shadow, block_length, dtype=torch.bool)
        last_accept = 30
        while mask_index.any():
            max_accept = min(max(int(mask_index.sum() * 0.7), 5), 20)
            with torch.no_grad():
                logits = denoiser.masked_logits(x, attention, position_ids).float()
            logits[..., forbidden] = float("-inf")
            calls += 1
            x0 = logits.argmax(-1)
            shift_left = torch.zeros_like(unmask)
            shift_left[:, lo:hi] = unmask[:, -block_length:]
            x0[unmask] = x[shift_left]
            p = F.softmax(logits.double(), dim=-1)
            x0_p = p.gather(-1, x0[..., None])[..., 0]
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, -np.inf)
            confidence_back = torch.where(unmask, x0_p, np.inf)
            transfer = confidence > threshold
            if transfer.sum() > max_accept:
                order = torch.argsort(confidence[0], descending=True, stable=True)[:max_accept]
                transfer = torch.zeros_like(transfer)
                transfer[0, order] = True
            elif not transfer.any():
                transfer[0, int(torch.argmax(confidence[0]))] = True
            x[transfer] = x0[transfer]
            num_accept = int(transfer.sum())
            if num_accept > 1:
                remask = confidence_back < threshold_back
                if remask.sum() >= last_accept:
                    order = torch.argsort(confidence_back[0], stable=True)[: last_accept - 1]
                    remask = torch.zeros_like(remask)
                    remask[0, order] = True
            else:
                remask = torch.zeros_like(transfer)
            remask_shift = torch.zeros_like(remask)
            remask_shift[:, lo:hi] = remask[:, -block_length:]
            x[remask_shift] = mask_id
            mask_index[transfer] = False
            mask_index[remask_shift] = True
            transfer_shift = torch.zeros_like(transfer)
            transfer_shift[:, -block_length:] = transfer[:, lo:hi]
            unmask[transfer_shift] = True
            unmask[remask] = False
            last_accept = num_accept
    return x[0, p0:p0 + gen_length].tolist(), calls


@pytest.mark.parametrize("model, threshold, threshold_back, block_length", [
    ("tiny_bert", 0.6, 0.9, 8),      # the reference defaults: a random BERT is never this sure, one slot per step
    ("tiny_bert", 0.012, 0.9, 8),    # wide in: several slots per step, narrow out: remasking
    ("tiny_bert", 0.011, 0.02, 16),  # one block, a looser verification
    ("tiny_bert", 0.0, 1.0, 4),      # every slot passes (capped at 5 of 4): one step per block
    ("llada", 0.6, 0.9, 8),
    ("llada", 0.05, 0.9, 8),         # remasking on the LLaDA stand-in (positions rotated, mask injected)
    ("llada", 0.03, 0.2, 16),
    ("llada", 0.0, 1.0, 4),
    ("dream", 0.6, 0.9, 8),
    ("dream", 0.05, 0.9, 8),         # remasking on the Dream stand-in (shadow one position early)
    ("dream", 0.03, 0.2, 16),
    ("dream", 0.0, 1.0, 4),
    ("llada_moe", 0.6, 0.9, 8),
    ("llada_moe", 0.05, 0.9, 8),     # remasking on the LLaDA-MoE stand-in (mask injected, positions passed)
])
def test_wino_matches_the_reference(model, threshold, threshold_back, block_length, request):
    """Three prompts of different lengths in one padded batch against the one-prompt reference."""
    denoiser = request.getfixturevalue(model)
    sampler = build_sampler("wino", threshold=threshold, threshold_back=threshold_back)
    results = run(denoiser, sampler, PROMPTS, gen_length=16, steps=16, block_length=block_length)
    for prompt, result in zip(PROMPTS, results):
        tokens, calls = wino_reference(denoiser, encode(denoiser, prompt), denoiser.mask_id, 16, block_length,
                                       threshold, threshold_back)
        assert (result.tokens, result.nfe) == (tokens, calls)
    if threshold in (0.012, 0.05):
        assert sum(r.decisions["remasked"] for r in results) > 0  # the narrow-out path ran


def test_canvas_queries_see_the_plain_canvas_and_shadow_query_i_misses_slot_i(tiny_bert):
    """The 4-D mask: canvas logits equal a plain forward; shadow query i equals a forward that cannot see slot i."""
    x = torch.tensor([encode(tiny_bert, "ab+cd=") + [tiny_bert.mask_id] * 2 + encode(tiny_bert, "xy")])
    attention = torch.ones_like(x)
    ids, mask, positions = shadow_inputs(x, attention, torch.tensor([6]), 4, tiny_bert.mask_id)
    with torch.no_grad():
        both = tiny_bert.masked_logits(ids, mask, positions)
        plain = tiny_bert.logits(x, attention_mask=attention)
    assert torch.allclose(both[:, :10], plain, atol=1e-5)
    # shadow query 0 (slot 6) with slot 6's key hidden differs from the canvas query at slot 6 only through that key
    hidden = mask.clone()
    hidden[:, :, 10, 6] = True
    with torch.no_grad():
        seeing = tiny_bert.masked_logits(ids, hidden, positions)
    assert not torch.allclose(seeing[:, 10], both[:, 10], atol=1e-5)
    assert torch.allclose(seeing[:, :10], both[:, :10], atol=1e-6)


class ScriptedShadow(Denoiser):
    """Its n-th masked forward returns `script(n)` = ({canvas slot: p(a)}, {shadow slot: p(a)}) as two-point
    distributions over the letters a, b; everything else flat."""

    def __init__(self, base: Denoiser, prompt_length: int, gen_length: int, script) -> None:
        super().__init__(base.model, base.tokenizer, mask_id=base.mask_id, forbidden_ids=base.forbidden_ids)
        self.prompt_length, self.gen_length, self.script, self.calls = prompt_length, gen_length, script, 0
        self.a, self.b = letters(base, "ab")

    @property
    def supports_4d_mask(self) -> bool:
        return True

    def masked_logits(self, input_ids, attention_mask, position_ids):
        logits = torch.zeros((*input_ids.shape, self.vocab_size))
        main, shadow = self.script(self.calls)
        width = self.prompt_length + self.gen_length
        for offset, where in ((self.prompt_length, main), (width, shadow)):
            for slot, p_a in where.items():
                row = torch.full((self.vocab_size,), float("-inf"))
                row[self.a], row[self.b] = math.log(p_a), math.log(1 - p_a)
                logits[:, offset + slot] = row
        self.calls += 1
        return logits


def test_hand_computed_steps(tiny_bert):
    """Block of 6, tau = 0.6, tau_back = 0.9. Call 0: p(a) = 0.9, 0.8 at slots 0, 1 pass (the rest 0.55): two
    written, nothing to verify yet. Call 1: slots 2, 3 pass (two written, > 1), and slot 0's shadow gives its written a
    only 0.5 < 0.9 while slot 1's gives 0.95: one suspect, fewer than last step's 2 writes, so slot 0 is masked again.
    Call 2: slots 0, 4, 5 pass, every shadow is sure: done in 3 forwards, one write undone."""
    prompt = encode(tiny_bert, "xy")
    rest = {k: 0.55 for k in range(6)}
    script = lambda n: [  # noqa: E731
        ({**rest, 0: 0.9, 1: 0.8}, {}),
        ({**rest, 2: 0.95, 3: 0.95}, {0: 0.5, 1: 0.95}),
        ({**rest, 0: 0.95, 4: 0.95, 5: 0.95}, {k: 0.95 for k in range(6)}),
    ][n]
    model = ScriptedShadow(tiny_bert, len(prompt), 6, script)
    (result,) = generate(model, [prompt], build_sampler("wino"), DecodeConfig(gen_length=6, steps=6, block_length=6,
                                                                              record_trajectory=True))
    a = letters(tiny_bert, "a")[0]
    assert result.tokens == [a] * 6
    assert (result.nfe, model.calls, result.decisions["remasked"]) == (3, 3, 1)
    assert [set(step["committed"]) for step in result.trajectory] == [{0, 1}, {2, 3}, {0, 4, 5}]


def test_oracles_and_non_bert_models_are_refused_before_loading(tmp_path):
    with pytest.raises(ConfigError, match="sampler=wino needs a denoiser that takes a 4-D attention mask"):
        check_sampler_fits_model(build_sampler("wino"), "oracle:sudoku4")
    check_sampler_fits_model(build_sampler("wino"), "builtin:tiny_addition")  # BERT: accepted


def test_a_model_without_the_capability_is_refused_at_its_first_step():
    oracle = load_denoiser("oracle:sudoku4")
    assert not oracle.supports_4d_mask
    prompt = oracle.tokenizer("....4....3.22..1|", add_special_tokens=False)["input_ids"]
    with pytest.raises(ConfigError, match="supports_4d_mask is False"):
        generate(oracle, [prompt], build_sampler("wino"), DecodeConfig(gen_length=16, steps=8, block_length=16))


@pytest.mark.parametrize("params, message", [({"threshold": 1.5}, "threshold=1.5"),
                                             ({"threshold_back": -0.1}, "threshold_back=-0.1")])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build_sampler("wino", **params)




@pytest.mark.parametrize("family", ["llada", "dream", "llada_moe"])
def test_masked_logits_with_full_attention_and_own_positions_is_the_plain_forward(family, request):
    """A padded batch: the 4-D mask hides the padding keys (as the 2-D padding mask does) and the positions are the
    canvas's own; the real positions' logits equal the plain forward's (fp32)."""
    denoiser = request.getfixturevalue(family)
    assert denoiser.supports_4d_mask
    torch.manual_seed(0)
    ids = torch.randint(0, denoiser.vocab_size, (2, 14))
    padding = torch.ones_like(ids)
    padding[1, 10:] = 0
    mask = padding.bool()[:, None, None, :].expand(2, 1, 14, 14).clone()
    positions = torch.arange(14)[None].expand(2, 14)
    with torch.no_grad():
        masked = denoiser.masked_logits(ids, mask, positions)
        plain = denoiser.logits(ids, attention_mask=padding)
    real = padding.bool()
    assert torch.allclose(masked[real], plain[real], atol=1e-5, rtol=0)


def _by_hand(denoiser, canvas: torch.Tensor) -> torch.Tensor:
    """A direct forward of a canvas built by hand (no 4-D mask, the model's own positions 0..L-1)."""
    with torch.no_grad():
        return denoiser.logits(canvas, attention_mask=torch.ones_like(canvas))


@pytest.mark.parametrize("family", ["tiny_bert", "llada", "dream", "llada_moe"])
def test_shadow_columns_are_a_forward_of_the_canvas_with_the_shadow_at_those_positions(family, request):
    """Two checks against direct forwards of canvases built by hand, independent of the 4-D-mask code path:
    (1) per-query masks and far positions: the canvas and a second canvas y appended after it (positions 0..L-1
    again) each attending to itself only: both parts' logits are the direct forwards of x and y;
    (2) a shadow at the positions of a block: random shadow tokens at positions [lo - lag, hi) that every query sees
    instead of the canvas's columns there: the shadow's logits (from column lag on) are the direct forward's at the
    block of the canvas with the shadow written into it, and so are the canvas columns the block does not feed."""
    denoiser = request.getfixturevalue(family)
    lag = denoiser.prediction_lag
    torch.manual_seed(1)
    width, lo, hi = 13, 5, 9
    x = torch.randint(0, denoiser.vocab_size, (1, width))
    y = torch.randint(0, denoiser.vocab_size, (1, width))
    both = torch.zeros(1, 1, 2 * width, 2 * width, dtype=torch.bool)
    both[..., :width, :width] = both[..., width:, width:] = True
    positions = torch.arange(width).repeat(2)[None]
    with torch.no_grad():
        out = denoiser.masked_logits(torch.cat([x, y], dim=1), both, positions)
    assert torch.allclose(out[:, :width], _by_hand(denoiser, x), atol=1e-5, rtol=0)
    assert torch.allclose(out[:, width:], _by_hand(denoiser, y), atol=1e-5, rtol=0)

    shadow = torch.randint(0, denoiser.vocab_size, (1, hi - lo + lag))
    mask = torch.ones(1, 1, width + shadow.shape[1], width + shadow.shape[1], dtype=torch.bool)
    mask[..., lo - lag:hi] = False  # every query sees the shadow instead of these canvas columns
    positions = torch.cat([torch.arange(width), torch.arange(lo - lag, hi)])[None]
    with torch.no_grad():
        out = denoiser.masked_logits(torch.cat([x, shadow], dim=1), mask, positions)
    written = x.clone()
    written[:, lo - lag:hi] = shadow
    direct = _by_hand(denoiser, written)
    assert torch.allclose(out[:, width + lag:], direct[:, lo:hi], atol=1e-5, rtol=0)
    untouched = torch.cat([torch.arange(0, lo - lag), torch.arange(hi + lag, width)])
    assert torch.allclose(out[:, untouched], direct[:, untouched], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["tiny_bert", "llada"])
def test_a_masked_forward_is_metered_at_its_real_columns(family, request):
    """Tokens processed = the real columns (padding keys hidden from every query are not counted); FLOPs = the
    dense forward over them, as FlopCounterMode counts the same call without padding."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from boe_eval.decoding.meter import Meter, MeteredDenoiser

    denoiser = request.getfixturevalue(family)
    x = torch.tensor([encode(denoiser, "ab+cd=") + [denoiser.mask_id] * 4 + [denoiser.pad_id] * 2])
    attention = torch.ones_like(x)
    attention[:, 10:] = 0
    ids, mask, positions = shadow_inputs(x, attention, torch.tensor([6]), 4, denoiser.mask_id)
    meter = Meter(1)
    MeteredDenoiser(denoiser, meter).forward_masked([0], ids, mask, positions)
    real = torch.cat([ids[:, :10], ids[:, 12:]], dim=1)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        denoiser.masked_logits(real, torch.ones(1, 1, 14, 14, dtype=torch.bool), torch.arange(14)[None])
    assert meter.row(0)["tokens_processed"] == 14 and meter.row(0)["nfe"] == 1
    assert meter.row(0)["forward_flops"] == counter.get_total_flops()


def test_llada_and_dream_pass_the_pre_flight_and_llada2_does_not(llada_dir, dream_dir, llada2_dir,  # noqa: F811
                                                                   llada_moe_dir):  # noqa: F811
    check_sampler_fits_model(build_sampler("wino"), llada_dir)
    check_sampler_fits_model(build_sampler("wino"), dream_dir)
    check_sampler_fits_model(build_sampler("wino"), llada_moe_dir)
    with pytest.raises(ConfigError, match="'llada2_moe' model, which does not"):
        check_sampler_fits_model(build_sampler("wino"), llada2_dir)


@pytest.mark.slow
def test_boe_eval_runs_wino_end_to_end_on_the_llada_stand_in(llada_dir, tmp_path):  # noqa: F811
    from test_model_families import example_rows, run_boe_eval

    proc = run_boe_eval(llada_dir, tmp_path / "out", "sampler=wino")
    assert proc.returncode == 0, proc.stderr[-2000:]
    examples = example_rows(tmp_path / "out")
    assert len(examples) == 2 and all(r["model_family"] == "llada" and r["sampler"] == "wino" for r in examples)
    assert all(1 <= r["nfe"] <= 8 and r["forward_flops"] > 0 and r["tokens_processed"] > 0 for r in examples)


def _llada_by_hand(denoiser, ids: torch.Tensor, allowed: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The LLaDA stand-in's forward written out layer by layer from its weights, with RoPE at `positions` and the
    boolean mask handed to the attention directly (no injection, no rotation after the fact)."""
    transformer, config = denoiser.model.model.transformer, denoiser.model.config

    def norm(module, x):
        return module.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + module.eps))

    heads = config.n_heads
    x = transformer.wte(ids)
    for block in transformer.blocks:
        h = norm(block.attn_norm, x)
        b, n, d = h.shape
        q, k, v = (proj(h).view(b, n, heads, d // heads).transpose(1, 2)
                   for proj in (block.q_proj, block.k_proj, block.v_proj))
        dim = q.shape[-1]
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        angle = positions.float()[..., None] * inv_freq
        angle = torch.cat((angle, angle), dim=-1)[:, None]

        def rope(t):
            first, second = t.chunk(2, dim=-1)
            return t * angle.cos() + torch.cat((-second, first), dim=-1) * angle.sin()

        out = F.scaled_dot_product_attention(rope(q), rope(k), v, attn_mask=allowed)
        x = x + block.attn_out(out.transpose(1, 2).reshape(b, n, d))
        h = norm(block.ff_norm, x)
        x = x + block.ff_out(F.silu(block.ff_proj(h)) * block.up_proj(h))
    return transformer.ff_out(norm(transformer.ln_f, x))


def test_wino_shadow_on_llada_equals_its_forward_written_out_by_hand(llada):  # noqa: F811
    """WINO's own canvas-plus-shadow inputs (two rows, padding, the ~eye mask, shadow positions of the block) through
    `masked_logits` against the stand-in's layers run by hand at those positions under that mask."""
    x = torch.tensor([encode(llada, "ab+cd=") + [llada.mask_id] * 4 + [llada.pad_id] * 2,
                      encode(llada, "abcd+efgh=") + [llada.mask_id] * 2])
    x[0, 7] = encode(llada, "z")[0]  # a written slot of the block
    attention = (torch.arange(12)[None] < torch.tensor([[10], [12]])).long()
    ids, mask, positions = shadow_inputs(x, attention, torch.tensor([6, 8]), 4, llada.mask_id)
    with torch.no_grad():
        ours = llada.masked_logits(ids, mask, positions)
        by_hand = _llada_by_hand(llada, ids, mask, positions)
    real = mask[:, 0].any(dim=1)
    assert torch.allclose(ours[real], by_hand[real], atol=1e-5, rtol=0)
