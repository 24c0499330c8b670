"""The denoiser layer (docs/design.md "Denoiser"): loading, alignment, inputs_embeds, padding, batching invariance.

Architectures: BERT and ModernBERT (tiny random configs from transformers) and the project's stand-ins for
the remote code of LLaDA, Dream and MDLM (tests/fixtures/remote_code), loaded through
`AutoModel.from_pretrained(dir, trust_remote_code=True)` like the real checkpoints. Expected values are
computed here by calling the underlying transformers model directly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fixtures.models import (  # noqa: F401  (pytest fixtures)
    dream,
    dream_dir,
    llada,
    llada_dir,
    mdlm,
    mdlm_dir,
    modernbert,
    modernbert_dir,
)
from fixtures.remote_code import REFERENCE_LOGITS, stand_in_logits

from boe_eval.errors import ConfigError
from boe_eval.decoding import DecodeConfig, generate, generate_batched
from boe_eval.models import Denoiser, DreamDenoiser, LLaDADenoiser, MDLMDenoiser, load_denoiser
from boe_eval.models.compat import compatible_model_class, default_rope_parameters, transformers_major
from boe_eval.models.dream import dream_attention_inputs
from boe_eval.models.mdlm import mdlm_mask_id
from boe_eval.models.padding_probe import honours_padding_mask
from boe_eval.models.sanity import check_denoiser, logit_problems
from boe_eval.samplers import build_sampler

ALL = ["tiny_bert", "modernbert", "llada", "dream", "mdlm"]
HONOUR_PADDING = {"tiny_bert": True, "modernbert": True, "llada": False, "dream": True, "mdlm": False}
#: how padding is kept out of attention after the load-time probe: LLaDA's and MDLM's code drop the mask, the
#: injected one holds (tests/test_mask_injection.py)
PADDING_MASK = {"tiny_bert": "model", "modernbert": "model", "llada": "injected", "dream": "model", "mdlm": "injected"}


def random_ids(denoiser, shape, seed=0):
    """Random non-special token ids with some mask tokens, as on a canvas during decoding."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 100, shape, generator=generator)  # ids 4..99 are characters in every tokenizer here
    ids[:, 2::3] = denoiser.mask_id
    return ids


def timestep_for(denoiser, batch):
    return torch.linspace(0.2, 0.9, batch) if denoiser.time_conditioned else None


def raw_model_logits(name, denoiser, ids, attention_mask=None, timestep=None):
    """The underlying transformers model called directly, in its own convention."""
    model = denoiser.model
    with torch.no_grad():
        if name == "mdlm":
            sigma = -torch.log1p(-(1 - 1e-3) * timestep)  # MDLM's LogLinearNoise total noise
            return model(input_ids=ids, timesteps=sigma).logits
        return model(input_ids=ids, attention_mask=attention_mask).logits


# ----------------------------------------------------------------------------- loading
@pytest.mark.parametrize(
    "name, cls, family",
    [("tiny_bert", Denoiser, "masked_lm"), ("modernbert", Denoiser, "masked_lm"), ("llada", LLaDADenoiser, "llada"),
     ("dream", DreamDenoiser, "dream"), ("mdlm", MDLMDenoiser, "mdlm")],
)
def test_load_denoiser_picks_the_wrapper_of_the_model_type(request, name, cls, family):
    den = request.getfixturevalue(name)
    assert type(den) is cls and den.family == family
    assert den.time_conditioned == (name == "mdlm")
    assert den.mask_id in den.forbidden_ids
    assert den.embedding_matrix.shape == (den.vocab_size, den.embed(torch.tensor([[5]])).shape[-1])


def test_llada_special_ids_come_from_config_and_tokenizer(llada, llada_dir, tmp_path):
    tok = llada.tokenizer
    mdm_mask, eos, eot = (tok.convert_tokens_to_ids(t) for t in ("<|mdm_mask|>", "<|endoftext|>", "<|eot_id|>"))
    assert llada.mask_id == mdm_mask == json.loads(open(f"{llada_dir}/config.json").read())["mask_token_id"]
    assert sorted(llada.suppress_ids) == sorted({eos, eot})
    assert llada.forbidden_ids == (mdm_mask,)  # EOS is LLaDA's padding and must stay writable
    # without mask_token_id in config.json the id is read from the tokenizer's <|mdm_mask|>
    copy = tmp_path / "llada_no_mask_id"
    shutil.copytree(llada_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["mask_token_id"]
    (copy / "config.json").write_text(json.dumps(config))
    assert load_denoiser(copy).mask_id == mdm_mask


def test_dream_mask_id_and_case_of_model_type(dream, dream_dir):
    assert json.loads(open(f"{dream_dir}/config.json").read())["model_type"] == "Dream"
    assert dream.mask_id == dream.tokenizer.convert_tokens_to_ids("<|mask|>")
    assert dream.suppress_ids == ()


def test_mdlm_mask_id_conventions():
    class Tok:
        mask_token_id = None

        def __len__(self):
            return 50257

    class Cfg:
        pass

    assert mdlm_mask_id(Cfg(), Tok(), 50258) == 50257  # GPT-2 + one extra row, as mdlm-owt
    cfg = Cfg()
    cfg.mask_token_id = 7
    assert mdlm_mask_id(cfg, Tok(), 50258) == 7
    with pytest.raises(ConfigError, match="cannot tell MDLM's mask id"):
        mdlm_mask_id(Cfg(), Tok(), 60000)


@pytest.mark.parametrize(
    "name, paths",
    [("llada", "model.transformer.blocks.{i}.attn_out"), ("dream", "model.layers.{i}.self_attn.o_proj"),
     ("mdlm", "backbone.blocks.{i}.attn_out")],
)
def test_attention_output_modules_are_the_documented_paths(request, name, paths):
    den = request.getfixturevalue(name)
    named = dict(den.model.named_modules())
    modules = den.attention_output_modules()
    assert len(modules) == 2
    for i, module in enumerate(modules):
        assert module is named[paths.format(i=i)]


# ----------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("name", ["tiny_bert", "modernbert", "llada", "mdlm"])
def test_unshifted_models_return_the_raw_logits(request, name):
    den = request.getfixturevalue(name)
    ids = random_ids(den, (2, 11))
    t = timestep_for(den, 2)
    with torch.no_grad():
        got = den.logits(ids, attention_mask=torch.ones_like(ids), timestep=t)
    torch.testing.assert_close(got, raw_model_logits(name, den, ids, torch.ones_like(ids), t), rtol=0, atol=1e-6)


def test_dream_logits_at_i_are_the_raw_logits_at_i_minus_1(dream):
    ids = random_ids(dream, (2, 11))
    with torch.no_grad():
        got = dream.logits(ids)
        raw = dream.model(input_ids=ids).logits
    assert torch.equal(got[:, 1:], raw[:, :-1])
    assert torch.equal(got[:, 0], raw[:, 0])


@pytest.mark.parametrize("kind, offset", [("llada", 0), ("dream", 1)])
def test_copy_model_shows_the_alignment(kind, offset, llada_dir, dream_dir):
    """Zero every residual branch and make the output head the embedding matrix: the raw model then predicts,
    at each position, the token at that position. LLaDA's wrapper keeps that (offset 0); Dream's wrapper shifts
    by one, so its logits at i point at token i - 1 (the raw model's prediction at i - 1 is token i - 1)."""
    den = load_denoiser(llada_dir if kind == "llada" else dream_dir)
    with torch.no_grad():
        if kind == "llada":
            blocks = den.model.model.transformer.blocks
            for block in blocks:
                block.attn_out.weight.zero_()
                block.ff_out.weight.zero_()
            den.model.model.transformer.ff_out.weight.copy_(den.embedding_matrix)
        else:
            for layer in den.model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            den.model.lm_head.weight.copy_(den.embedding_matrix)
        ids = torch.randint(4, 100, (1, 30), generator=torch.Generator().manual_seed(1))
        predicted = den.logits(ids).argmax(-1)[0]
    assert torch.equal(predicted[offset:], ids[0, : ids.shape[1] - offset])


# ----------------------------------------------------------------------------- inputs_embeds
@pytest.mark.parametrize("name", ALL)
def test_inputs_embeds_give_the_same_logits_as_input_ids(request, name):
    den = request.getfixturevalue(name)
    ids = random_ids(den, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row too
    t = timestep_for(den, 2)
    with torch.no_grad():
        from_ids = den.logits(ids, attention_mask=mask, timestep=t)
        from_embeds = den.logits(inputs_embeds=den.embed(ids), attention_mask=mask, timestep=t)
    torch.testing.assert_close(from_embeds, from_ids, rtol=0, atol=1e-6)


def test_inputs_embeds_carry_gradients(mdlm, llada, dream):
    for den in (mdlm, llada, dream):
        ids = random_ids(den, (1, 8))
        embeds = den.embed(ids).detach().requires_grad_(True)
        den.logits(inputs_embeds=embeds, timestep=timestep_for(den, 1)).logsumexp(-1).sum().backward()
        assert embeds.grad is not None and embeds.grad.abs().sum() > 0


def test_mdlm_uses_the_timestep_and_requires_it(mdlm):
    ids = random_ids(mdlm, (1, 10))
    with torch.no_grad():
        early, late = (mdlm.logits(ids, timestep=torch.tensor([t])) for t in (0.1, 0.9))
    assert (early - late).abs().max() > 1e-3
    with pytest.raises(ValueError, match="time-conditioned"):
        mdlm.logits(ids)


# ----------------------------------------------------------------------------- padding mask
def padded_logits(den, ids, junk, left=False):
    """Logits at the real positions of `ids` [1, n] with `junk` [1, k] behind a zero attention mask."""
    n = ids.shape[1]
    full = torch.cat([junk, ids] if left else [ids, junk], dim=1)
    mask = torch.ones_like(full)
    real = slice(junk.shape[1], None) if left else slice(0, n)
    mask[:, : junk.shape[1]] = 0 if left else 1
    if not left:
        mask[:, n:] = 0
    with torch.no_grad():
        return den.logits(full, attention_mask=mask, timestep=timestep_for(den, 1))[:, real]


@pytest.mark.parametrize("name", ALL)
def test_padding_probe_matches_what_the_model_does(request, name):
    den = request.getfixturevalue(name)
    ids = random_ids(den, (1, 10), seed=3)
    junk = torch.randint(4, 100, (1, 6), generator=torch.Generator().manual_seed(4))
    injected = den.inject_padding_mask
    assert den.padding_mask == PADDING_MASK[name] and den.honours_padding_mask
    den.inject_padding_mask = False  # the model's own code
    try:
        with torch.no_grad():
            alone = den.logits(ids, attention_mask=torch.ones_like(ids), timestep=timestep_for(den, 1))
        change = float((padded_logits(den, ids, junk) - alone).abs().max() / alone.std())
        assert honours_padding_mask(den) is HONOUR_PADDING[name]
    finally:
        den.inject_padding_mask = injected
    if HONOUR_PADDING[name]:
        assert change < 1e-5
    else:  # the probe's verdict is a fact about the model: right-padded junk moves the real logits
        assert change > 1e-2
        injected_change = float((padded_logits(den, ids, junk) - alone).abs().max() / alone.std())
        assert injected_change < 1e-5  # ... unless the mask is injected


@pytest.mark.parametrize("name", ["modernbert", "llada", "dream", "mdlm"])
def test_padding_probe_verdict_holds_in_bfloat16(request, name):
    den = load_denoiser(request.getfixturevalue(f"{name}_dir"), dtype="bfloat16")
    assert den.dtype == torch.bfloat16
    assert den.padding_mask == PADDING_MASK[name]


def test_dream_left_padding_gives_the_logits_of_the_row_alone(dream):
    ids = random_ids(dream, (1, 10), seed=5)
    junk = torch.randint(4, 100, (1, 5), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        alone = dream.logits(ids)
    torch.testing.assert_close(padded_logits(dream, ids, junk, left=True), alone, rtol=0, atol=1e-5)


def test_dream_attention_inputs_count_real_tokens_only():
    keep = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mask, position_ids = dream_attention_inputs(keep)
    assert mask.shape == (3, 1, 5, 5) and mask.dtype == torch.bool
    for b in range(3):  # every query row sees exactly the real keys of its sequence
        assert torch.equal(mask[b, 0], keep[b].bool().expand(5, 5))
    assert position_ids[0, 2:].tolist() == [0, 1, 2] and position_ids[1, :3].tolist() == [0, 1, 2]
    assert dream_attention_inputs(torch.ones(2, 4, dtype=torch.long)) == (None, None)  # "full" attention
    assert dream_attention_inputs(None) == (None, None)


def test_probe_catches_a_dream_wrapper_that_drops_the_mask(dream):
    class MaskDroppingDream(DreamDenoiser):
        def _forward(self, input_ids, inputs_embeds, attention_mask, timestep):
            return super()._forward(input_ids, inputs_embeds, None, timestep)

    broken = MaskDroppingDream(dream.model, dream.tokenizer, mask_id=dream.mask_id)
    assert honours_padding_mask(broken) is False


# ----------------------------------------------------------------------------- end to end
PROMPTS = ["hello ", "ab", "the quick ", "xyz12", "qq", "hello!"]


def decode_tokens(den, batch_size, steps=8, gen_length=8):
    prompts = [den.tokenizer(p, add_special_tokens=False).input_ids for p in PROMPTS]
    out = generate_batched(den, prompts, build_sampler("confidence"), DecodeConfig(gen_length=gen_length, steps=steps),
                           seeds=list(range(len(prompts))), batch_size=batch_size, progress=False)
    return [r.tokens for r in out], [r.nfe for r in out]


@pytest.mark.parametrize("name", ["llada", "mdlm", "tiny_bert", "dream"])
def test_batch_size_does_not_change_the_tokens(request, name):
    den = request.getfixturevalue(name)
    tokens_1, nfe_1 = decode_tokens(den, 1)
    tokens_4, nfe_4 = decode_tokens(den, 4)
    assert tokens_4 == tokens_1
    assert nfe_1 == nfe_4 == [8] * len(PROMPTS)
    assert all(den.mask_id not in t for t in tokens_1)


def test_models_that_ignore_padding_refuse_mixed_lengths_and_would_depend_on_the_batch(llada):
    prompts = [llada.tokenizer(p, add_special_tokens=False).input_ids for p in PROMPTS[:3]]
    llada.inject_padding_mask, llada.honours_padding_mask = False, False  # as without mask injection
    try:
        with pytest.raises(ValueError, match="equal length"):
            generate(llada, prompts, build_sampler("confidence"), DecodeConfig(gen_length=8, steps=8))
        # the premise of equal-length grouping: padded junk changes LLaDA's predictions for a real prompt
        ids = torch.tensor([prompts[1] + [llada.mask_id] * 8])
        junk = torch.randint(4, 100, (1, 8), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            alone = llada.logits(ids)
        assert not torch.allclose(padded_logits(llada, ids, junk), alone, atol=1e-4)
    finally:
        llada.inject_padding_mask, llada.honours_padding_mask = True, True


# ----------------------------------------------------------------------------- bad directories
def corrupt(kind, source, target):
    shutil.copytree(source, target)
    if kind == "no_modeling_code":
        (target / "modeling_llada.py").unlink()
    elif kind == "no_weights":
        (target / "model.safetensors").unlink()
    elif kind == "truncated_weights":
        data = (target / "model.safetensors").read_bytes()
        (target / "model.safetensors").write_bytes(data[:300])
    elif kind == "missing_dependency":
        code = (target / "modeling_llada.py").read_text()
        (target / "modeling_llada.py").write_text("import boe_package_that_is_not_installed\n" + code)
    elif kind == "corrupt_config":
        (target / "config.json").write_text("{not json")
    elif kind == "no_config":
        (target / "config.json").unlink()
    return target


@pytest.mark.parametrize(
    "kind, message",
    [("missing_dir", "is not a directory"), ("no_config", "has no config.json"), ("corrupt_config", "not valid JSON"),
     ("no_modeling_code", "modeling_llada.py"), ("no_weights", "model.safetensors"),
     ("truncated_weights", "could not load"), ("missing_dependency", "boe_package_that_is_not_installed")],
)
def test_bad_model_directory_gives_a_one_line_config_error(kind, message, llada_dir, tmp_path):
    target = tmp_path / f"bad_{kind}"
    if kind != "missing_dir":
        corrupt(kind, Path(llada_dir), target)
    with pytest.raises(ConfigError) as err:
        load_denoiser(target)
    text = str(err.value)
    assert "\n" not in text and message in text and str(target) in text


# ----------------------------------------------------------------------------- transformers 4.x and 5.x (issue 18)
#: what transformers 5.24 left in a Dream rotary `inv_freq` buffer when nothing initialised it (printed once from
#: the stand-in: finite, tiny, of either sign), and NaN, which uninitialised memory can equally hold
UNINITIALISED_INV_FREQ = {
    "recorded": [-7.0462e-22, 4.5630e-41, -3.4537e-22, 4.5630e-41, -7.0453e-22, 4.5630e-41, -3.4537e-22, 4.5630e-41],
    "nan": [float("nan")] * 8,
}


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_stand_in_logits_equal_the_transformers_4_57_logits(kind, llada_dir, dream_dir):
    """Same weights, same inputs: the running transformers gives exactly (fp32, max abs diff 0) the logits that
    transformers 4.57 gave (saved by fixtures.remote_code.write_reference_logits)."""
    from safetensors import safe_open

    with safe_open(str(REFERENCE_LOGITS), "pt") as saved:
        assert saved.metadata()["transformers"].startswith("4.57")
        reference = saved.get_tensor(kind)
    got = stand_in_logits(kind, llada_dir if kind == "llada" else dream_dir)
    assert got.dtype == torch.float32 and got.shape == reference.shape
    assert float((got - reference).abs().max()) == 0.0


def test_compatibility_layer_changes_nothing_on_transformers_4(llada):
    cls = type(llada.model)
    if transformers_major() < 5:
        assert compatible_model_class(cls.__mro__[0]) is cls
    else:  # on 5.x the loaded class is the wrapper: post_init ran, tie_weights takes 5.x's keywords
        assert hasattr(llada.model, "all_tied_weights_keys")
        llada.model.tie_weights(missing_keys=set(), recompute_mapping=False)
    assert llada.model.config.use_cache is False  # LLaDA's forward reads it when no use_cache is passed


def test_default_rope_parameters_are_the_original_rope_frequencies():
    class Cfg:
        rope_theta, hidden_size, num_attention_heads = 10000.0, 64, 4

    inv_freq, scaling = default_rope_parameters(Cfg())
    expected = torch.tensor([10000.0 ** (-2 * i / 16) for i in range(8)], dtype=torch.float64)
    assert scaling == 1.0 and inv_freq.shape == (8,)
    torch.testing.assert_close(inv_freq.double(), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("contents", sorted(UNINITIALISED_INV_FREQ))
def test_a_dream_with_an_uninitialised_rotary_buffer_is_refused_in_one_line(contents, dream_dir, monkeypatch):
    """The loader's rotary fix replaced by what an uninitialised buffer holds: refused, not run."""
    from boe_eval.models import compat

    def leave_uninitialised(model):
        for module in model.modules():
            if isinstance(getattr(module, "inv_freq", None), torch.Tensor):
                module.inv_freq = torch.tensor(UNINITIALISED_INV_FREQ[contents], dtype=module.inv_freq.dtype)
        return 0

    monkeypatch.setattr(compat, "initialise_rotary_buffers", leave_uninitialised)
    with pytest.raises(ConfigError) as err:
        load_denoiser(dream_dir)
    text = str(err.value)
    assert "\n" not in text and "sanity check" in text and dream_dir in text
    assert f"transformers {compat.transformers_version()}" in text and "pip install" in text
    # (NaN frequencies do not even give NaN logits: PyTorch's CPU attention kernel turns them into finite garbage)
    assert "rotary frequencies are not initialised" in text


def test_without_the_rotary_fix_dream_is_refused_or_right_never_silently_wrong(dream_dir, monkeypatch):
    """The faithful stand-in with the loader's rotary fix switched off: on transformers 4.x `__init__` computes
    `inv_freq` and the logits are the reference; on 5.x the buffer is left uninitialised and the model must be
    refused. Either way no garbage logits come back."""
    from boe_eval.models import compat

    monkeypatch.setattr(compat, "initialise_rotary_buffers", lambda model: 0)
    try:
        got = stand_in_logits("dream", dream_dir)
    except ConfigError as err:
        assert transformers_major() >= 5 and "sanity check" in str(err)
        return
    from safetensors import safe_open

    with safe_open(str(REFERENCE_LOGITS), "pt") as saved:
        assert torch.equal(got, saved.get_tensor("dream"))


def test_remote_code_that_cannot_load_on_this_version_gives_a_one_line_error(llada_dir, dream_dir, monkeypatch):
    """Without the compatibility layer the remote code fails inside transformers 5 (Dream: no "default" RoPE
    init; LLaDA: no post_init attributes): a one-line ConfigError naming the version, never a traceback. On 4.x
    the same code loads."""
    import contextlib

    from boe_eval.models import compat

    monkeypatch.setattr(compat, "remote_code_compat", contextlib.nullcontext)
    monkeypatch.setattr(compat, "compatible_model_class", lambda cls: cls)
    for path in (llada_dir, dream_dir):
        if transformers_major() < 5:
            assert load_denoiser(path) is not None
            continue
        with pytest.raises(ConfigError) as err:
            load_denoiser(path)
        text = str(err.value)
        assert "\n" not in text and path in text and f"transformers {compat.transformers_version()}" in text


def test_sanity_check_flags_non_finite_and_batch_dependent_logits(tiny_bert):
    class BatchDependent(Denoiser):
        def _forward(self, input_ids, inputs_embeds, attention_mask, timestep):
            logits = super()._forward(input_ids, inputs_embeds, attention_mask, timestep)
            return logits + input_ids.shape[0]  # depends on who else is in the batch

    class NaNLogits(Denoiser):
        def _forward(self, input_ids, inputs_embeds, attention_mask, timestep):
            logits = super()._forward(input_ids, inputs_embeds, attention_mask, timestep)
            logits[:, 0] = float("nan")  # every row's first position
            return logits

    assert logit_problems(tiny_bert) == []
    broken = BatchDependent(tiny_bert.model, tiny_bert.tokenizer, mask_id=tiny_bert.mask_id)
    assert logit_problems(broken) == ["a row's logits change when it is run alone instead of in a batch"]
    nan = NaNLogits(tiny_bert.model, tiny_bert.tokenizer, mask_id=tiny_bert.mask_id, name="nan-model")
    assert logit_problems(nan) == ["12% of the logits are NaN or infinite"]  # 1 of the probe's 8 positions
    with pytest.raises(ConfigError, match=r"^model 'nan-model' fails the load-time sanity check on transformers \S+: "
                       r"12% of the logits are NaN or infinite\."):
        check_denoiser(nan)


# ----------------------------------------------------------------------------- refused before loading (issue 18)
@pytest.mark.parametrize("name", ["remdm_cap", "remdm_rescale", "remdm_loop"])
def test_time_conditioned_samplers_are_refused_on_llada_and_dream_before_loading(name, llada_dir, dream_dir, mdlm_dir,
                                                                                 monkeypatch):
    pytest.importorskip("hydra", reason="the pre-flight needs the harness (not in the small transformers-5 venv)")
    from boe_eval.harness import evaluate
    from boe_eval.harness.cli import CONFIG_DIR, check
    from boe_eval.harness.schema import preflight
    from boe_eval.models import loading

    monkeypatch.setattr(loading, "load_denoiser", lambda *a, **k: pytest.fail("a model was loaded"))
    for path in (llada_dir, dream_dir):
        with pytest.raises(ConfigError) as err:
            preflight([f"sampler={name}", f"model.path={path}", "limit=1"], CONFIG_DIR, check)
        text = str(err.value)
        assert "\n" not in text and f"sampler={name}" in text and "time-conditioned" in text and "remdm_llada" in text
    evaluate.check_sampler_fits_model(build_sampler(name), mdlm_dir)  # MDLM is time-conditioned: accepted
    evaluate.check_sampler_fits_model(build_sampler("remdm_llada"), llada_dir)  # LLaDA's own ReMDM: accepted


def test_missing_llada_weights_name_the_variable_and_model_path():
    with pytest.raises(ConfigError) as err:
        load_denoiser("/models/LLaDA-8B-Instruct")  # the llada_8b_instruct config's default when unset
    text = str(err.value)
    assert "is not a directory" in text and "$LLADA_8B_INSTRUCT" in text and "model.path=<dir>" in text
    with pytest.raises(ConfigError) as err:
        load_denoiser("/no/such/dir")
    assert "$" not in str(err.value) and "model.path=<dir>" in str(err.value)


def test_a_relative_position_bert_loads_with_its_distance_embeddings_or_is_refused():
    """builtin:tiny_pivot_dense is a BERT with relative_key positions: transformers 4.x builds its distance embeddings
    (and the model decodes); 5.x does not, and the loader refuses it in one line instead of running it without them.
    The check itself: a config asking for relative positions on a model built without them is refused on any
    version."""
    from transformers import BertConfig, BertForMaskedLM

    from boe_eval.models.loading import check_relative_positions_built

    if transformers_major() < 5:
        denoiser = load_denoiser("builtin:tiny_pivot_dense")
        assert any(hasattr(m, "distance_embedding") for m in denoiser.model.modules())
    else:
        with pytest.raises(ConfigError) as err:
            load_denoiser("builtin:tiny_pivot_dense")
        text = str(err.value)
        assert "\n" not in text and "'relative_key'" in text and "transformers 4.x" in text
    config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=32)
    model = BertForMaskedLM(config)
    check_relative_positions_built(model, "absolute")  # absolute positions: nothing to check
    model.config.position_embedding_type = "relative_key"  # asked for, but built without them
    with pytest.raises(ConfigError, match="'relative_key' position encodings"):
        check_relative_positions_built(model, "stand-in")
