"""The step window (docs/design.md "Step window"): the loop hands samplers the canvas columns from the shortest
prompt's end on and the model's output head runs there only. Tokens and metered compute must be exactly those of
the whole-canvas loop (`DecodeConfig(logits_window=False)`), for every registered sampler, on the built-in model
(prompts of different lengths, so the window holds prompt columns of the longer rows) and on the tiny LLaDA and
Dream stand-ins (real remote-code layouts; Dream predicts token i from hidden state i - 1)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import boe_eval.samplers  # noqa: F401  (registers every sampler module)
from boe_eval.decoding import DecodeConfig, generate
from boe_eval.decoding.meter import Meter, MeteredDenoiser, StepWindow
from boe_eval.models.loading import load_denoiser
from boe_eval.samplers.base import SAMPLERS, build_sampler
from fixtures.models import dream, dream_dir, llada, llada_dir, mdlm, mdlm_dir  # noqa: F401  (pytest fixtures)

NAMES = sorted(SAMPLERS)
#: BoE's variants that take other paths through the window (fused forward, dense backward, Dream's query rows)
BOE_VARIANTS = [{"fuse_forward": True}, {"aqa": False}, {"aqa_mode": "faithful"}, {"signal": "random"}]


@pytest.fixture(scope="module")
def models():
    return {"builtin": load_denoiser("builtin:tiny_addition"), "oracle": load_denoiser("oracle:sudoku4")}


def _both(model, prompts, name, params, config, seeds):
    out = []
    for window in (True, False):
        cfg = dataclasses.replace(config, logits_window=window)
        out.append(generate(model, prompts, build_sampler(name, **params), cfg, seeds))
    return out


def _assert_same(windowed, whole):
    for a, b in zip(windowed, whole):
        assert a.tokens == b.tokens
        assert (a.nfe, a.forwards, a.backwards, a.tokens_processed) == (b.nfe, b.forwards, b.backwards,
                                                                         b.tokens_processed)


def _builtin_setting(name, models):
    if SAMPLERS[name][0].needs_time_conditioning:
        model = models["oracle"]
        texts = ["....4....3.22..1|", ".14........1.23.|", "....2..4..3...41|"]
        return model, [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], \
            DecodeConfig(gen_length=16, steps=8, block_length=16)
    model = models["builtin"]
    texts = ["1234567890+0987654321=", "55555+44=", "1000000+9000000000="]  # three prompt lengths
    return model, [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], \
        DecodeConfig(gen_length=12, steps=6, block_length=6)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("name", NAMES)
def test_window_gives_the_whole_canvas_tokens_on_the_builtin_model(name, temperature, models):
    model, prompts, config = _builtin_setting(name, models)
    config = dataclasses.replace(config, temperature=temperature)
    _assert_same(*_both(model, prompts, name, {}, config, [3, 4, 5]))


@pytest.mark.parametrize("params", BOE_VARIANTS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_window_gives_the_whole_canvas_tokens_for_boe_variants(params, models):
    model, prompts, config = _builtin_setting("boe", models)
    _assert_same(*_both(model, prompts, "boe", params, config, [3, 4, 5]))


def _stand_in_prompts(model):
    texts = ["12+34=", "99+1=?"]  # equal lengths: LLaDA ignores the padding mask
    return [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


@pytest.mark.parametrize("name", [n for n in NAMES if not (SAMPLERS[n][0].needs_time_conditioning
                                                              or SAMPLERS[n][0].needs_4d_mask)])
def test_window_gives_the_whole_canvas_tokens_on_the_llada_stand_in(name, llada):  # noqa: F811
    config = DecodeConfig(gen_length=8, steps=8, block_length=4, temperature=0.5)
    params = {"uniform_prior": True} if name == "pc_sampler" else {}  # no token frequencies for the stand-in
    _assert_same(*_both(llada, _stand_in_prompts(llada), name, params, config, [1, 2]))


@pytest.mark.parametrize("name", ["confidence", "boe", "lookum", "info_gain"])
def test_window_gives_the_whole_canvas_tokens_on_the_dream_stand_in(name, dream):  # noqa: F811
    """Dream's first window column is predicted from the prompt's last position (outside the window): BoE's active
    query rows must still include it."""
    config = DecodeConfig(gen_length=8, steps=8, block_length=8)
    _assert_same(*_both(dream, _stand_in_prompts(dream), name, {}, config, [1, 2]))


@pytest.mark.parametrize("family", ["builtin", "llada", "dream", "mdlm"])
def test_logits_from_equals_the_sliced_full_logits(family, request):
    denoiser = load_denoiser("builtin:tiny_addition") if family == "builtin" else request.getfixturevalue(family)
    torch.manual_seed(0)
    ids = torch.randint(0, denoiser.vocab_size, (2, 20))
    ids[:, 12:] = denoiser.mask_id
    mask = torch.ones_like(ids)
    t = torch.tensor([0.5, 0.4]) if denoiser.time_conditioned else None
    with torch.no_grad():
        full = denoiser.logits(ids, attention_mask=mask, timestep=t)
        for start in (1, 7, 12):
            part = denoiser.logits(ids, attention_mask=mask, timestep=t, logits_from=start)
            assert part.shape == (2, 20 - start, full.shape[-1])
            torch.testing.assert_close(part, full[:, start:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["builtin", "llada", "dream"])
def test_the_head_runs_on_the_window_only(family, request):
    """Head slicing is real for these architectures: the output projection sees L - start positions (Dream one
    more: its logits are shifted by one position)."""
    denoiser = load_denoiser("builtin:tiny_addition") if family == "builtin" else request.getfixturevalue(family)
    head = denoiser.model.get_output_embeddings()
    seen = []
    handle = head.register_forward_hook(lambda _m, _args, out: seen.append(tuple(out.shape)))
    try:
        ids = torch.full((1, 20), denoiser.mask_id)
        with torch.no_grad():
            denoiser.logits(ids, logits_from=12)
    finally:
        handle.remove()
    assert [s[1] for s in seen] == [8 + (family == "dream")]


def test_the_facade_completes_window_inputs_with_the_prefix_and_keeps_gradients(llada):  # noqa: F811
    """A window-sized forward (ids or embeddings) equals the whole-canvas forward's window, gradients w.r.t. the
    window embeddings included, and is metered with the whole row's tokens."""
    torch.manual_seed(1)
    x = torch.randint(0, 60, (2, 14))
    x[:, 9:] = llada.mask_id
    attention = torch.ones_like(x)
    offset = 6
    window = StepWindow(x[:, :offset], attention[:, :offset], x.shape[1])
    windowed, whole = MeteredDenoiser(llada, Meter(2), window), MeteredDenoiser(llada, Meter(2))
    rows = torch.tensor([1])
    a = windowed.forward(rows, x[1:, offset:], attention_mask=attention[1:, offset:])
    b = whole.forward(rows, x[1:], attention_mask=attention[1:])
    torch.testing.assert_close(a, b[:, offset:], rtol=0, atol=1e-6)
    assert windowed.meter.tokens.tolist() == whole.meter.tokens.tolist() == [0, 14]
    grads = []
    for model, start in ((windowed, offset), (whole, 0)):
        inputs = model.embed(x[:, start:]).detach().requires_grad_(True)
        logits = model.forward([0, 1], inputs_embeds=inputs, attention_mask=attention[:, start:], grad=True)
        entropy = -(logits.log_softmax(-1).exp() * logits.log_softmax(-1)).sum(-1)[:, -5:].sum()
        grads.append(model.grad([0, 1], entropy, inputs)[:, offset - start:])
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-6)
    assert windowed.canvas_columns(torch.ones(2, 8, dtype=torch.bool)).tolist() == [[False] * 6 + [True] * 8] * 2
    assert torch.equal(windowed.canvas_ids([1], x[1:, offset:]), x[1:])
    full = windowed.forward(rows, windowed.canvas_ids([1], x[1:, offset:]), attention_mask=attention[1:])
    torch.testing.assert_close(full, b, rtol=0, atol=0)  # whole-canvas inputs pass unchanged
    with pytest.raises(ValueError, match="padding mask"):
        windowed.forward(rows, x[1:, offset:], attention_mask=torch.ones(1, 1, 8, 8))
