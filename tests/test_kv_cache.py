"""Fast-dLLM's prefix and dual KV caches as a model capability (boe_eval.models.kv_cache; docs/design.md "KV caches"):
exact where they must be (a block's first step; a cached forward of an unchanged canvas; LLaDA's prefix cache against
the hub code's own `past_key_values` path, which Fast-dLLM's `generate_with_prefix_cache` uses), metered for the
positions actually fed, refused where they do not apply, and runnable with every greedy sampler."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import boe_eval.samplers  # noqa: F401  (registers every sampler module)
from boe_eval.decoding import DecodeConfig, generate
from boe_eval.decoding.meter import Meter, MeteredDenoiser, StepWindow
from boe_eval.errors import ConfigError
from boe_eval.models.loading import load_denoiser
from boe_eval.samplers.base import SAMPLERS, build_sampler
from fixtures.models import dream, dream_dir, llada, llada_dir, llada_moe, llada_moe_dir, mdlm, mdlm_dir  # noqa: F401

#: samplers the cache serves (BoE's gradient forward and WINO's 4-D-mask forwards are refused; the sigma-schedules
#: need a time-conditioned model, which the cache does not serve)
CACHED = sorted(n for n, (cls, _) in SAMPLERS.items()
                if not (cls.needs_grad or cls.needs_4d_mask or cls.needs_time_conditioning))


@pytest.fixture(scope="module")
def builtin():
    return load_denoiser("builtin:tiny_addition")


def _model(family, request):
    return request.getfixturevalue("builtin" if family == "builtin" else family)


def _canvas(denoiser, seed=0, width=20, prompt=8):
    torch.manual_seed(seed)
    ids = torch.randint(3, min(denoiser.vocab_size, 13), (2, width))
    ids[:, prompt:] = denoiser.mask_id
    return ids


@pytest.mark.parametrize("family", ["builtin", "llada", "dream", "llada_moe"])
@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_a_cached_forward_of_an_unchanged_canvas_equals_the_full_forward(family, cache, request):
    """The kept keys/values are those the canvas itself would give: the forward of [s, W) or [s, e) alone, placed
    at its positions (BERT's and Dream's position ids, LLaDA's RoPE shifted by s), gives the full forward's logits
    there (Dream feeds one column more on the left: its logits at i come from the hidden state at i - 1)."""
    denoiser = _model(family, request)
    ids, offset, s, e = _canvas(denoiser), 6, 12, 16
    mask = torch.ones_like(ids)
    window = StepWindow(ids[:, :offset], mask[:, :offset], ids.shape[1])
    model = MeteredDenoiser(denoiser, Meter(2), window, cache=cache)
    model.start_block(torch.tensor([s, s + 1]), torch.tensor([e - 1, e]))
    with torch.no_grad():
        first = model.forward([0, 1], ids[:, offset:], attention_mask=mask[:, offset:])
        full = denoiser.logits(ids, attention_mask=mask, logits_from=offset)
        again = model.forward([1], ids[1:, offset:], attention_mask=mask[1:, offset:])
    torch.testing.assert_close(first, full, rtol=0, atol=0)  # the block's first step is the plain forward
    torch.testing.assert_close(again, full[1:], rtol=0, atol=1e-5)
    # the batch feeds from s, row 1 is metered for its own block [s + 1, e) (`_own_fed_tokens`)
    fed = (20 if cache == "prefix" else e) - (s + 1) + (family == "dream")
    assert model.meter.tokens.tolist() == [20, 20 + fed]
    assert model.meter.nfe.tolist() == [1, 2]


def test_the_llada_prefix_cache_equals_the_hub_code_past_key_values(llada):  # noqa: F811
    """Fast-dLLM's `generate_with_prefix_cache`: after the block's first forward (use_cache=True, keys/values cut to
    [0, s)), a later step forwards x[:, s:] with those past keys/values; the hub code (and its stand-in) places the
    suffix at positions s.. (queries are the last keys). The kernel-interception cache must give the same logits on
    a canvas whose block changed since."""
    ids, s = _canvas(llada), 12
    mask = torch.ones_like(ids)
    model = MeteredDenoiser(llada, Meter(2), cache="prefix")
    model.start_block(torch.tensor([s, s]), torch.tensor([s + 4, s + 4]))
    with torch.no_grad():
        model.forward([0, 1], ids, attention_mask=mask)
        past = llada.model(input_ids=ids, use_cache=True).past_key_values
        changed = ids.clone()
        changed[:, s:s + 2] = 5  # two slots of the block written since the block's first step
        cached = model.forward([0, 1], changed, attention_mask=mask)
        reference = llada.model(input_ids=changed[:, s:], past_key_values=[(k[:, :, :s], v[:, :, :s]) for k, v in past],
                                use_cache=True).logits
        full = llada.logits(changed, attention_mask=mask)
    torch.testing.assert_close(cached[:, s:], reference, rtol=0, atol=1e-5)
    assert not torch.allclose(cached[:, s:], full[:, s:], atol=1e-6)  # an approximation: the prefix keys are stale


def test_the_stand_in_past_key_values_path_is_exact_on_an_unchanged_canvas(llada):  # noqa: F811
    """The stand-in's `past_key_values` path (hub semantics): prefix keys of the same canvas give the full logits."""
    ids, s = _canvas(llada), 9
    with torch.no_grad():
        out = llada.model(input_ids=ids, use_cache=True)
        suffix = llada.model(input_ids=ids[:, s:], past_key_values=[(k[:, :, :s], v[:, :, :s])
                                                                    for k, v in out.past_key_values]).logits
    torch.testing.assert_close(suffix, out.logits[:, s:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["builtin", "llada", "dream"])
@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cached_forward_flops_equal_the_flop_counter(family, cache, request):
    """The shorter forward is counted as FlopCounterMode counts it: q fed positions against every key of the row."""
    denoiser = _model(family, request)
    ids, s, e = _canvas(denoiser), 12, 16
    mask = torch.ones_like(ids)
    model = MeteredDenoiser(denoiser, Meter(2), cache=cache)
    model.start_block(torch.tensor([s, s]), torch.tensor([e, e]))
    with torch.no_grad():
        model.forward([0, 1], ids, attention_mask=mask)
        before = model.meter.forward_flops.clone()
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model.forward([0], ids[:1], attention_mask=mask[:1])
    analytic = float(model.meter.forward_flops[0] - before[0])
    # (Dream's rotary table is one more tiny matrix product, as in tests/test_flops.py)
    assert analytic == pytest.approx(counter.get_total_flops(), rel=1e-3 if family == "dream" else 1e-9)
    assert float(before[0]) > analytic  # the cached forward is cheaper than the block's first one


class _Recorder:
    """Wraps a policy: keeps (block_step, window canvas, window logits) of every step."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def select(self, ctx):
        self.seen.append((ctx.block_step, ctx.rows.clone(), ctx.x.clone(), ctx.attention_mask.clone(),
                          ctx.logits.clone(), ctx.offset))
        return self.inner.select(ctx)


@pytest.mark.parametrize("family", ["builtin", "llada", "dream"])
@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_the_first_step_of_every_block_sees_the_uncached_logits(family, cache, request, builtin):
    denoiser = _model(family, request)
    texts = ["12+34=", "99+1=?"]
    prompts = [denoiser.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    recorder = _Recorder(build_sampler("confidence"))
    generate(denoiser, prompts, recorder, DecodeConfig(gen_length=8, steps=8, block_length=2, cache=cache), [1, 2])
    firsts = [entry for entry in recorder.seen if entry[0] == 0]
    assert len(firsts) == 4
    for _, rows, x, attn, logits, offset in firsts:
        canvas = torch.cat([torch.tensor([prompts[r][:offset] for r in rows.tolist()]), x], dim=1)
        full_attn = torch.cat([torch.ones(len(rows), offset, dtype=attn.dtype), attn], dim=1)
        with torch.no_grad():
            fresh = denoiser.logits(canvas, attention_mask=full_attn, logits_from=offset).float()
        finite = torch.isfinite(logits)
        torch.testing.assert_close(logits[finite], fresh[finite], rtol=0, atol=0)
    later = [entry for entry in recorder.seen if entry[0] > 0]
    assert later  # the cached steps ran


@pytest.mark.parametrize("name", CACHED)
def test_every_greedy_sampler_runs_with_the_caches_and_feeds_fewer_tokens(name, builtin):
    texts = ["1234567890+0987654321=", "55555+44=", "1000000+9000000000="]  # three prompt lengths
    prompts = [builtin.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    config = DecodeConfig(gen_length=12, steps=6, block_length=4)
    out = {cache: generate(builtin, prompts, build_sampler(name), dataclasses.replace(config, cache=cache), [3, 4, 5])
           for cache in ("none", "prefix", "dual")}
    for cache in ("prefix", "dual"):
        for cached, plain in zip(out[cache], out["none"]):
            assert len(cached.tokens) == 12 and builtin.mask_id not in cached.tokens
            # per forward (a sampler that sets its own pace, dVoting, may take other steps on other logits); only
            # a block's later forwards are cheaper (factor may finish each of the 3 blocks in one step)
            fewer = (lambda a, b: a < b) if cached.forwards > 3 else (lambda a, b: a == b)
            assert fewer(cached.tokens_processed / cached.forwards, plain.tokens_processed / plain.forwards)
            assert fewer(cached.forward_flops / cached.forwards, plain.forward_flops / plain.forwards)
    for dual, prefix in zip(out["dual"], out["prefix"]):
        assert dual.tokens_processed / dual.forwards <= prefix.tokens_processed / prefix.forwards


@pytest.mark.parametrize("name", sorted(n for n, (cls, _) in SAMPLERS.items() if not cls.needs_time_conditioning))
def test_cache_none_takes_the_plain_path_for_every_sampler(name, builtin, monkeypatch):
    """cache=none never intercepts the attention kernel nor makes a part forward: tokens and metered compute are
    those of a run that never names the cache (the loop as it was), for every sampler on the built-in model."""
    import boe_eval.decoding.meter as meter_module

    plain = generate(builtin, _three_prompts(builtin), build_sampler(name), _CONFIG, [3, 4, 5])

    def fail(*_args, **_kwargs):
        raise AssertionError("the KV cache machinery ran with cache=none")

    for attribute in ("recording", "reusing"):
        monkeypatch.setattr(meter_module, attribute, fail)
    monkeypatch.setattr(type(builtin), "part_logits", fail)
    off = generate(builtin, _three_prompts(builtin), build_sampler(name), dataclasses.replace(_CONFIG, cache="none"),
                   [3, 4, 5])
    for a, b in zip(off, plain):
        assert a.tokens == b.tokens
        assert {**a.compute(), "wall_time_s": 0} == {**b.compute(), "wall_time_s": 0}


_CONFIG = DecodeConfig(gen_length=12, steps=6, block_length=4)


def _three_prompts(model):
    return [model.tokenizer(t, add_special_tokens=False)["input_ids"]
            for t in ["1234567890+0987654321=", "55555+44=", "1000000+9000000000="]]


@pytest.mark.parametrize("name", ["boe", "wino"])
def test_boe_and_wino_are_refused_with_a_cache(name, builtin):
    prompts = [builtin.tokenizer("55555+44=", add_special_tokens=False)["input_ids"]]
    with pytest.raises(ConfigError, match=f"cache=prefix does not fit sampler={name}"):
        generate(builtin, prompts, build_sampler(name), DecodeConfig(gen_length=12, steps=6, block_length=4,
                                                                     cache="prefix"))


def test_a_model_without_the_capability_is_refused(mdlm):  # noqa: F811
    with pytest.raises(ConfigError, match="cache=dual needs a model"):
        MeteredDenoiser(mdlm, Meter(1), cache="dual")
    with pytest.raises(ConfigError, match="cache='full' is invalid"):
        MeteredDenoiser(mdlm, Meter(1), cache="full")


# ----------------------------------------------------------------------------------- run spec and sweep
def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_the_cache_is_part_of_a_cell_only_when_it_is_on():
    """cache=none keeps the identity (store hash) every existing cell has; prefix/dual are other experiments."""
    from boe_eval.harness.specs import build_specs

    base = ["model=tiny_addition", "task=tiny_addition", "sampler=threshold", "block_length=4", "limit=5"]
    (none, _), = build_specs(_compose(base))
    (plain, _), = build_specs(_compose(base + ["cache=none"]))
    (dual, _), = build_specs(_compose(base + ["cache=dual"]))
    assert "cache" not in none.identity() and none.identity() == plain.identity()
    assert dual.identity() == {**none.identity(), "cache": "dual"}
    assert (none.columns()["cache"], dual.columns()["cache"], dual.columns()["variant"]) == ("none", "dual",
                                                                                          "threshold+dual")


def test_bad_cache_values_and_refused_samplers_stop_before_loading():
    from boe_eval.harness.specs import build_specs

    with pytest.raises(ConfigError, match="cache='full' is invalid"):
        build_specs(_compose(["model=tiny_addition", "task=tiny_addition", "cache=full"]))
    with pytest.raises(ConfigError, match="cache=dual does not fit sampler=boe"):
        build_specs(_compose(["model=tiny_addition", "task=tiny_addition", "sampler=boe", "cache=dual"]))


def test_a_sweep_runs_each_decoder_at_each_cache_mode_and_boe_at_none_only():
    from boe_eval.harness.sweep import plan_sweep

    cells = plan_sweep(_compose(["sweep=tiny_addition_cache"]))
    variants = {c.spec.columns()["variant"]: c.spec.cache for c in cells}
    assert variants["confidence"] == "none" and variants["confidence+prefix"] == "prefix"
    assert variants["threshold+dual"] == "dual" and "boe" in variants
    assert not any(v.startswith("boe+") for v in variants)
    assert len({c.spec.identity().__repr__() for c in cells}) == len(cells)
    with pytest.raises(ConfigError, match="sweep.caches"):
        plan_sweep(_compose(["sweep=tiny_addition_cache", "sweep.caches=[none,full]"]))


@pytest.mark.parametrize("family", ["llada", "dream", "llada_moe"])
@pytest.mark.parametrize("name", ["confidence", "threshold", "eb", "lookum"])
def test_the_stand_ins_run_with_the_caches(family, name, request):
    denoiser = _model(family, request)
    prompts = [denoiser.tokenizer(t, add_special_tokens=False)["input_ids"] for t in ["12+34=", "99+1=?"]]
    config = DecodeConfig(gen_length=8, steps=8, block_length=4)
    out = {cache: generate(denoiser, prompts, build_sampler(name), dataclasses.replace(config, cache=cache), [1, 2])
           for cache in ("none", "prefix", "dual")}
    for cache in ("prefix", "dual"):
        for cached, plain in zip(out[cache], out["none"]):
            assert denoiser.mask_id not in cached.tokens
            if cached.forwards > 2:  # a later step of a block ran: fewer positions fed per forward
                assert cached.tokens_processed / cached.forwards < plain.tokens_processed / plain.forwards


def test_an_unsupported_model_is_refused_before_loading(tmp_path):
    from boe_eval.harness.specs import check_cache_fits

    (tmp_path / "config.json").write_text('{"model_type": "mdlm"}')
    with pytest.raises(ConfigError, match="cache=prefix needs a model .* 'mdlm' model"):
        check_cache_fits(build_sampler("confidence"), "prefix", str(tmp_path))
    check_cache_fits(build_sampler("confidence"), "prefix", "builtin:tiny_addition")


@pytest.mark.parametrize("family", ["builtin", "llada", "dream", "llada_moe"])
@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_a_right_padded_row_keeps_its_padding_out_of_the_cached_attention(family, cache, request):
    """A shorter row of the batch (right padding; LLaDA's padding mask injected into the kernel): the cached forward
    of the unchanged canvas still gives the full forward's logits, and only real positions are metered."""
    denoiser = _model(family, request)
    ids = _canvas(denoiser)
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0
    ids[1, 17:] = denoiser.pad_id
    model = MeteredDenoiser(denoiser, Meter(2), cache=cache)
    model.start_block(torch.tensor([10, 10]), torch.tensor([14, 14]))
    with torch.no_grad():
        first = model.forward([0, 1], ids, attention_mask=mask)
        again = model.forward([0, 1], ids, attention_mask=mask)
    torch.testing.assert_close(again[:, 10:14], first[:, 10:14], rtol=0, atol=1e-5)
    lead = family == "dream"
    fed = [(20 if cache == "prefix" else 14) - 10 + lead, (17 if cache == "prefix" else 14) - 10 + lead]
    assert model.meter.tokens.tolist() == [20 + fed[0], 17 + fed[1]]


@pytest.mark.parametrize("family", ["builtin", "dream"])
@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_a_rows_metered_tokens_and_flops_are_those_it_has_alone(family, cache, request):
    """Three prompt lengths in one batch: the cached forwards feed from the batch's earliest block start, but each row
    is metered for its own fed span ([s_r - lead, W) or [s_r - lead, e_r)), so its tokens processed and FLOPs equal
    those of the row decoded alone (confidence: the same forwards either way)."""
    model = _model(family, request)
    prompts, seeds = _three_prompts(model), [3, 4, 5]
    config = dataclasses.replace(_CONFIG, cache=cache)
    batch = generate(model, prompts, build_sampler("confidence"), config, seeds)
    for prompt, seed, batched in zip(prompts, seeds, batch):
        [alone] = generate(model, [prompt], build_sampler("confidence"), config, [seed])
        assert alone.forwards == batched.forwards
        assert (alone.tokens_processed, alone.forward_flops) == (batched.tokens_processed, batched.forward_flops)
