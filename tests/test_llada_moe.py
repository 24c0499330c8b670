"""LLaDA-MoE (issue 18 item 2): the project's stand-in for the hub's `modeling_lladamoe.py`
(tests/fixtures/remote_code/llada_moe), loaded through `AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=
True)` like the real checkpoints, whose config.json says `model_type: "llada"` (dense LLaDA's) and is recognised by
its `architectures`. Expected logits come from `restated_llada_moe_logits`, a plain restatement of the hub model's
forward (embedding, QK-normed grouped full attention with RoPE, softmax top-k MoE with expert bias and no
renormalisation, a shared expert) computed here from the state dict, token by token for the MoE.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from fixtures.models import llada_dir, llada_moe, llada_moe_dir  # noqa: F401  (pytest fixtures)
from test_model_families import example_rows, random_ids, rms, run_boe_eval, swiglu

from boe_eval.decoding import DecodeConfig, generate_batched
from boe_eval.models import LLaDADenoiser, LLaDAMoEDenoiser, load_denoiser
from boe_eval.samplers import build_sampler


def restated_moe(sd, prefix, cfg, x):
    """One token x [d]: softmax of the gate logits plus the expert bias, the top-k of those (weights as they are: no
    renormalisation, no scaling factor); plus the shared expert."""
    weights = torch.softmax(sd[f"{prefix}.mlp.gate.weight"] @ x, -1) + sd[f"{prefix}.mlp.expert_bias"]
    chosen = sorted(range(cfg["num_experts"]), key=lambda e: -float(weights[e]))[: cfg["num_experts_per_tok"]]
    out = sum(weights[e] * swiglu(sd, f"{prefix}.mlp.experts.{e}", x) for e in chosen)
    return out + swiglu(sd, f"{prefix}.shared_expert", x)


def restated_llada_moe_logits(model_dir, ids):
    """LLaDA-MoE's forward restated from the hub code, one row at a time (float64): full attention."""
    from safetensors.torch import load_file

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    sd = {k: v.double() for k, v in load_file(str(Path(model_dir) / "model.safetensors")).items()}
    heads, kv_heads, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    head_dim = cfg["hidden_size"] // heads
    rotary = int(head_dim * cfg["partial_rotary_factor"])
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, rotary, 2, dtype=torch.float64) / rotary))
    rows = []
    for b in range(ids.shape[0]):
        length = ids.shape[1]
        angles = torch.arange(length)[:, None].double() * inv_freq[None]
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)

        def rope(t):
            r, rest = t[..., :rotary], t[..., rotary:]
            turned = torch.cat([-r[..., rotary // 2:], r[..., : rotary // 2]], -1)
            return torch.cat([r * cos + turned * sin, rest], -1)

        h = sd["model.embed_tokens.weight"][ids[b]]
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}"
            x = rms(h, sd[f"{p}.input_layernorm.weight"], eps)
            q = rms((x @ sd[f"{p}.self_attn.q_proj.weight"].T).view(length, heads, head_dim),
                    sd[f"{p}.self_attn.q_norm.weight"], eps)
            k = rms((x @ sd[f"{p}.self_attn.k_proj.weight"].T).view(length, kv_heads, head_dim),
                    sd[f"{p}.self_attn.k_norm.weight"], eps)
            v = (x @ sd[f"{p}.self_attn.v_proj.weight"].T).view(length, kv_heads, head_dim)
            out = []
            for head in range(heads):
                kv = head // (heads // kv_heads)
                att = (rope(q[:, head]) @ rope(k[:, kv]).T / head_dim**0.5).softmax(-1)
                out.append(att @ v[:, kv])
            h = h + torch.cat(out, -1) @ sd[f"{p}.self_attn.o_proj.weight"].T
            x = rms(h, sd[f"{p}.post_attention_layernorm.weight"], eps)
            if cfg["moe_layer_freq"][i] == 0:
                h = h + swiglu(sd, f"{p}.mlp", x)
            else:
                h = h + torch.stack([restated_moe(sd, p, cfg, x[t]) for t in range(length)])
        rows.append(rms(h, sd["model.norm.weight"], eps) @ sd["lm_head.weight"].T)
    return torch.stack(rows)


def test_llada_moe_is_told_from_dense_llada_by_its_architecture(llada_moe, llada_moe_dir, llada_dir):  # noqa: F811
    config = json.loads((Path(llada_moe_dir) / "config.json").read_text())
    assert config["model_type"] == json.loads((Path(llada_dir) / "config.json").read_text())["model_type"] == "llada"
    assert config["architectures"] == ["LLaDAMoEModelLM"] and "mask_token_id" not in config
    assert type(llada_moe) is LLaDAMoEDenoiser and llada_moe.family == "llada_moe"
    assert type(load_denoiser(llada_dir)) is LLaDADenoiser


def test_llada_moe_loads_with_its_ids_and_modules(llada_moe):  # noqa: F811
    den, tok = llada_moe, llada_moe.tokenizer
    assert den.mask_id == tok.convert_tokens_to_ids("<|mask|>")  # found in the tokenizer, as for the hub files
    assert den.forbidden_ids == (den.mask_id,) and den.suppress_ids == ()  # EOS (= padding) stays writable
    assert den.eos_id == den.pad_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert den.padding_mask == "injected"  # the hub code drops the mask; the probe keeps the injected one
    assert den.embedding_matrix.shape == (den.vocab_size, 32)
    named = dict(den.model.named_modules())
    assert den.attention_output_modules() == [named[f"model.layers.{i}.self_attn.o_proj"] for i in range(2)]
    assert den.describe()["model_family"] == "llada_moe"


def test_llada_moe_logits_equal_the_stand_ins_forward_and_the_restated_one(llada_moe, llada_moe_dir):  # noqa: F811
    den = llada_moe
    ids = random_ids(den, (2, 12), seed=1)
    with torch.no_grad():
        got = den.logits(ids)
        direct = den.model(input_ids=ids).logits
        window = den.logits(ids, logits_from=5)
    assert torch.equal(got, direct)  # the denoiser adds nothing to an unpadded forward
    assert torch.equal(window, got[:, 5:])  # the head cut to the step window
    expected = restated_llada_moe_logits(llada_moe_dir, ids)
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-5)
    assert float(got.std()) > 0.3  # the random model's logits vary visibly


def test_the_hub_code_ignores_the_padding_mask_so_the_denoiser_injects_it(llada_moe):  # noqa: F811
    """The raw model attends to padded junk whatever mask it gets; through the denoiser a right-padded row gets the
    logits of the row alone."""
    den = llada_moe
    ids = random_ids(den, (1, 10), seed=2)
    junk = ids.clone()
    junk[0, 7:] = torch.tensor([5, 6, 7])
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    with torch.no_grad():
        raw = [den.model(input_ids=x, attention_mask=mask).logits[:, :7] for x in (ids, junk)]
        masked = [den.logits(x, attention_mask=mask)[:, :7] for x in (ids, junk)]
        alone = den.logits(ids[:, :7])
    assert float((raw[0] - raw[1]).abs().max()) > 1e-3
    torch.testing.assert_close(masked[0], alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(masked[1], alone, rtol=0, atol=1e-5)


def test_llada_moe_padded_rows_decode_as_alone(llada_moe):  # noqa: F811
    den = llada_moe
    prompts = [den.tokenizer(p, add_special_tokens=False).input_ids for p in ["hello ", "ab", "the quick ", "xy"]]
    config = DecodeConfig(gen_length=8, steps=4, block_length=8)
    runs = [generate_batched(den, prompts, build_sampler("confidence"), config, seeds=[0, 1, 2, 3],
                             batch_size=size, progress=False) for size in (1, 4)]
    assert [r.tokens for r in runs[0]] == [r.tokens for r in runs[1]]
    assert all(r.nfe == 4 and den.mask_id not in r.tokens for r in runs[0])


def test_llada_moe_logits_equal_the_transformers_4_57_logits(llada_moe_dir):  # noqa: F811
    """Same weights, same inputs: the running transformers gives exactly (fp32, max abs diff 0) the logits that
    transformers 4.57 gave (fixtures.remote_code.write_reference_logits)."""
    from fixtures.remote_code import REFERENCE_LOGITS, stand_in_logits
    from safetensors import safe_open

    with safe_open(str(REFERENCE_LOGITS), "pt") as saved:
        assert saved.metadata()["transformers"].startswith("4.57")
        reference = saved.get_tensor("llada_moe")
    got = stand_in_logits("llada_moe", llada_moe_dir)
    assert got.dtype == torch.float32 and got.shape == reference.shape
    assert float((got - reference).abs().max()) == 0.0


def test_llada_moe_without_the_compatibility_layer_fails_in_one_line_on_transformers_5(llada_moe_dir, monkeypatch):  # noqa: F811
    """The hub code imports `transformers.modeling_attn_mask_utils` and looks up `ROPE_INIT_FUNCTIONS["default"]`,
    both gone in transformers 5: without the compatibility layer, a one-line error naming the model."""
    import contextlib

    from boe_eval.errors import ConfigError
    from boe_eval.models import compat

    monkeypatch.setattr(compat, "remote_code_compat", contextlib.nullcontext)
    if compat.transformers_major() < 5:
        assert load_denoiser(llada_moe_dir) is not None
        return
    for module in [name for name in sys.modules if name.startswith("transformers_modules.")]:
        monkeypatch.delitem(sys.modules, module)  # import the remote code afresh
    with pytest.raises(ConfigError) as err:
        load_denoiser(llada_moe_dir)
    text = str(err.value)
    assert "\n" not in text and llada_moe_dir in text
    assert f"does not load on transformers {compat.transformers_version()}" in text


def test_llada_moe_with_its_rotary_buffer_left_uninitialised_is_refused_on_transformers_5(llada_moe_dir, monkeypatch):  # noqa: F811
    """transformers 5 materialises the non-persistent `inv_freq` uninitialised; without the loader's recomputation
    the load-time sanity check refuses the model in one line instead of decoding garbage. On 4.x the buffer is
    computed in `__init__` and the model loads either way."""
    from boe_eval.errors import ConfigError
    from boe_eval.models import compat

    monkeypatch.setattr(compat, "initialise_rotary_buffers", lambda model: 0)
    if compat.transformers_major() < 5:
        assert load_denoiser(llada_moe_dir).mask_id is not None
        return
    with pytest.raises(ConfigError) as err:
        load_denoiser(llada_moe_dir)
    text = str(err.value)
    assert "\n" not in text and "fails the load-time sanity check" in text and "inv_freq" in text


def test_time_conditioned_samplers_are_refused_before_loading(llada_moe_dir):  # noqa: F811
    from boe_eval.errors import ConfigError
    from boe_eval.harness.specs import check_sampler_fits_model

    pytest.importorskip("hydra", reason="the harness is not in the small transformers-5 venv")
    with pytest.raises(ConfigError, match="time-conditioned"):
        check_sampler_fits_model(build_sampler("remdm_cap"), llada_moe_dir)
    for name in ("boe", "wino"):  # WINO's 4-D mask: tests/test_sampler_wino.py
        check_sampler_fits_model(build_sampler(name), llada_moe_dir)


@pytest.mark.slow
def test_boe_eval_runs_end_to_end_on_the_llada_moe_stand_in(llada_moe_dir, tmp_path):  # noqa: F811
    for sampler in ("confidence", "boe"):
        proc = run_boe_eval(llada_moe_dir, tmp_path / "out", f"sampler={sampler}")
        assert proc.returncode == 0, proc.stderr[-2000:]
    examples = example_rows(tmp_path / "out")
    assert sorted(r["sampler"] for r in examples) == ["boe", "boe", "confidence", "confidence"]
    assert all(r["model_family"] == "llada_moe" and r["padding_mask"] == "injected" for r in examples)
    assert all(r["nfe"] == 8 for r in examples if r["sampler"] == "confidence")
    names = sorted(f.name.rsplit("-", 1)[0] for f in (tmp_path / "out" / "rows").glob("*.jsonl"))
    assert names == ["boe-steps8", "confidence-steps8"]  # row files say which cell they hold
    assert "| rows/boe-steps8-" in (tmp_path / "out" / "summary.md").read_text()  # the last job's summary table


def test_the_compatibility_layers_attention_mask_converter_builds_4x_masks():
    """`compat.AttentionMaskConverter` (put in place of the module transformers 5 removed) builds the masks 4.x's
    does: compared with the real class where it exists, else with masks written out by hand."""
    from boe_eval.models.compat import AttentionMaskConverter

    padding = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    low = torch.finfo(torch.float32).min
    full = AttentionMaskConverter(is_causal=False).to_4d(padding, 3, torch.float32, key_value_length=4)
    causal = AttentionMaskConverter(is_causal=True).to_4d(padding, 3, torch.float32, key_value_length=4)
    alone = AttentionMaskConverter(is_causal=True).to_causal_4d(2, 3, 4, torch.float32)
    assert AttentionMaskConverter(is_causal=True).to_causal_4d(2, 1, 4) is None
    expected_full = torch.zeros(2, 1, 3, 4)
    expected_full[0, :, :, 3] = low
    expected_alone = torch.zeros(2, 1, 3, 4).masked_fill(~torch.ones(3, 4, dtype=torch.bool).tril(1), low)
    assert torch.equal(full, expected_full) and torch.equal(alone, expected_alone)
    assert torch.equal(causal, torch.minimum(expected_full, expected_alone))
    try:
        from transformers.modeling_attn_mask_utils import AttentionMaskConverter as Real
    except ImportError:
        return
    assert torch.equal(full, Real(is_causal=False).to_4d(padding, 3, torch.float32, key_value_length=4))
    assert torch.equal(causal, Real(is_causal=True).to_4d(padding, 3, torch.float32, key_value_length=4))
    assert torch.equal(alone, Real(is_causal=True).to_causal_4d(2, 3, 4, torch.float32))


@pytest.mark.parametrize("default, variable", [("/models/LLaDA-MoE-7B-A1B-Instruct", "$LLADA_MOE_INSTRUCT"),
                                               ("/models/LLaDA-MoE-7B-A1B-Base", "$LLADA_MOE_BASE")])
def test_missing_llada_moe_weights_name_the_variable_and_model_path(default, variable):
    """configs/model/llada_moe_{instruct,base}.yaml read their path from an environment variable; unset and absent,
    the default path gives one line naming the variable and `model.path=`."""
    from boe_eval.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_denoiser(default)
    text = str(err.value)
    assert "\n" not in text and "is not a directory" in text and variable in text and "model.path=<dir>" in text


def test_a_forward_with_gradients_through_the_in_place_expert_bias_has_the_out_of_place_gradients(llada_moe,  # noqa: F811
                                                                                                  monkeypatch):
    """The hub router adds its expert bias in place to a saved softmax: a plain backward fails; through the denoiser
    (BoE's surrogate forward on embeddings) it gives the logits and gradients of the same router written out of
    place (softmax + bias, the in-place add switched off)."""
    den = llada_moe
    embeds = den.embed(random_ids(den, (1, 9), seed=4)).detach().requires_grad_(True)
    with pytest.raises(RuntimeError, match="inplace operation"):
        den.model(inputs_embeds=embeds).logits.square().sum().backward()
    logits = den.logits(inputs_embeds=embeds)
    (grad,) = torch.autograd.grad(logits.square().sum(), embeds)

    (block,) = [m for m in den.model.modules() if getattr(m, "expert_bias", None) is not None]
    bias, softmax = block.expert_bias, torch.nn.functional.softmax
    monkeypatch.setattr(block, "expert_bias", None)  # the model runs SDPA: the router is the only softmax call
    monkeypatch.setattr(torch.nn.functional, "softmax", lambda x, *a, **k: softmax(x, *a, **k) + bias)
    expected_logits = den.model(inputs_embeds=embeds).logits
    (expected,) = torch.autograd.grad(expected_logits.square().sum(), embeds)
    torch.testing.assert_close(logits, expected_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-6)
    assert float(grad.abs().max()) > 0
