"""Model families of 2026 (issue 18 item 2): LLaDA2.x (block-diffusion MoE remote code) and DiffusionGemma.

LLaDA2: the project's stand-in for the hub's `modeling_llada2_moe.py` (tests/fixtures/remote_code/llada2), loaded
through `AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)` like the real checkpoints. Expected
logits come from `restated_llada2_logits`, a plain restatement of the hub model's forward (embedding, QK-normed
grouped attention with partial RoPE under LLaDA2's block-causal mask, sigmoid group-limited top-k MoE with a shared
expert) computed here from the state dict, token by token for the MoE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures.models import diffusion_gemma_dir, llada2, llada2_dir  # noqa: F401  (pytest fixtures)
from fixtures.remote_code import make_remote_code_model

from boe_eval.decoding import DecodeConfig, generate_batched
from boe_eval.models import LLaDA2Denoiser, load_denoiser
from boe_eval.models.llada2 import block_causal_mask
from boe_eval.samplers import build_sampler


def random_ids(denoiser, shape, seed=0):
    ids = torch.randint(4, 100, shape, generator=torch.Generator().manual_seed(seed))
    ids[:, 2::3] = denoiser.mask_id
    return ids


def rms(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def swiglu(sd, prefix, x):
    gate, up, down = (sd[f"{prefix}.{name}.weight"] for name in ("gate_proj", "up_proj", "down_proj"))
    return (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ down.T


def restated_moe(sd, prefix, cfg, x):
    """One token x [d]: sigmoid scores, expert_bias for the choice only, the `topk_group` groups whose two best
    biased scores sum highest, the top-k experts inside them, weights = their unbiased scores renormalised times
    routed_scaling_factor; plus the shared expert."""
    scores = torch.sigmoid(sd[f"{prefix}.gate.weight"] @ x)
    biased = scores + sd[f"{prefix}.gate.expert_bias"]
    per_group = cfg["num_experts"] // cfg["n_group"]
    group_score = [sorted(biased[g * per_group:(g + 1) * per_group].tolist())[-2:] for g in range(cfg["n_group"])]
    groups = sorted(range(cfg["n_group"]), key=lambda g: -sum(group_score[g]))[: cfg["topk_group"]]
    candidates = [e for g in groups for e in range(g * per_group, (g + 1) * per_group)]
    chosen = sorted(candidates, key=lambda e: -float(biased[e]))[: cfg["num_experts_per_tok"]]
    weights = scores[chosen] / scores[chosen].sum() * cfg["routed_scaling_factor"]
    out = sum(w * swiglu(sd, f"{prefix}.experts.{e}", x) for w, e in zip(weights, chosen))
    return out + swiglu(sd, f"{prefix}.shared_experts", x)


def restated_llada2_logits(model_dir, ids, attention_mask, block_length):
    """LLaDA2's forward restated from the hub code, for one row at a time (float64)."""
    from safetensors.torch import load_file

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    sd = {k: v.double() for k, v in load_file(str(Path(model_dir) / "model.safetensors")).items()}
    heads, kv_heads, head_dim, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], 1e-5
    rotary = int(head_dim * cfg["partial_rotary_factor"])
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, rotary, 2, dtype=torch.float64) / rotary))
    rows = []
    for b in range(ids.shape[0]):
        length = ids.shape[1]
        pos = torch.arange(length)
        allowed = ((pos[None, :] // block_length) <= (pos[:, None] // block_length)) & attention_mask[b].bool()[None, :]
        angles = pos[:, None].double() * inv_freq[None]
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)

        def rope(t):
            r, rest = t[..., :rotary], t[..., rotary:]
            half = rotary // 2
            turned = torch.cat([-r[..., half:], r[..., :half]], -1)
            return torch.cat([r * cos + turned * sin, rest], -1)

        h = sd["model.word_embeddings.weight"][ids[b]]
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}"
            x = rms(h, sd[f"{p}.input_layernorm.weight"], eps)
            qkv = (x @ sd[f"{p}.attention.query_key_value.weight"].T).view(length, heads + 2 * kv_heads, head_dim)
            q, k, v = qkv[:, :heads], qkv[:, heads:heads + kv_heads], qkv[:, heads + kv_heads:]
            q = rms(q, sd[f"{p}.attention.query_layernorm.weight"], eps)
            k = rms(k, sd[f"{p}.attention.key_layernorm.weight"], eps)
            out = []
            for head in range(heads):
                kv = head // (heads // kv_heads)
                qh, kh = rope(q[:, head]), rope(k[:, kv])
                att = (qh @ kh.T) / head_dim**0.5
                att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
                out.append(att @ v[:, kv])
            attn = torch.cat(out, -1) @ sd[f"{p}.attention.dense.weight"].T + sd[f"{p}.attention.dense.bias"]
            h = h + attn
            x = rms(h, sd[f"{p}.post_attention_layernorm.weight"], eps)
            if i < cfg["first_k_dense_replace"]:
                h = h + swiglu(sd, f"{p}.mlp", x)
            else:
                h = h + torch.stack([restated_moe(sd, f"{p}.mlp", cfg, x[t]) for t in range(length)])
        rows.append(rms(h, sd["model.norm.weight"], eps) @ sd["lm_head.weight"].T)
    return torch.stack(rows)


@pytest.fixture(scope="module")
def llada2_block4_dir(tmp_path_factory):
    """The stand-in with `block_length: 4` in config.json, so that a 12-position canvas spans three blocks."""
    return make_remote_code_model("llada2", tmp_path_factory.mktemp(f"llada2_b4_{os.getpid()}_"), block_length=4)


def test_llada2_loads_with_its_ids_and_block_length(llada2, llada2_dir, llada2_block4_dir):
    assert type(llada2) is LLaDA2Denoiser and llada2.family == "llada2"
    tok = llada2.tokenizer
    assert "mask_token_id" not in json.loads((Path(llada2_dir) / "config.json").read_text())
    assert llada2.mask_id == tok.convert_tokens_to_ids("<|mask|>")  # found in the tokenizer, as for the hub files
    assert llada2.forbidden_ids == (llada2.mask_id,) and llada2.suppress_ids == ()
    assert llada2.block_length == 32 and load_denoiser(llada2_block4_dir).block_length == 4
    assert llada2.honours_padding_mask is True  # measured by the probe: the block mask removes padded keys
    assert llada2.embedding_matrix.shape == (llada2.vocab_size, 32)
    named = dict(llada2.model.named_modules())
    assert llada2.attention_output_modules() == [named[f"model.layers.{i}.attention.dense"] for i in range(2)]


def test_llada2_logits_equal_the_restated_forward(llada2_block4_dir):
    den = load_denoiser(llada2_block4_dir)
    ids = random_ids(den, (2, 12))
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 9:] = 0
    with torch.no_grad():
        got = den.logits(ids, attention_mask=attention_mask)
    expected = restated_llada2_logits(llada2_block4_dir, ids, attention_mask, block_length=4)
    real = attention_mask.bool()
    torch.testing.assert_close(got[real].double(), expected[real], rtol=0, atol=2e-5)
    assert float(expected.std()) > 0.1  # the comparison is not between two near-constant tensors


def test_llada2_attention_is_block_causal(llada2_block4_dir):
    """Changing block 2 (positions 8-11) leaves blocks 0-1 unchanged; changing position 5 (block 1) changes every
    position of block 1 and after, and none of block 0."""
    den = load_denoiser(llada2_block4_dir)
    ids = random_ids(den, (1, 12), seed=1)
    later, same = ids.clone(), ids.clone()
    later[0, 9] = 42 if int(ids[0, 9]) != 42 else 43
    same[0, 5] = 42 if int(ids[0, 5]) != 42 else 43
    with torch.no_grad():
        base, after_later, after_same = (den.logits(x) for x in (ids, later, same))
    assert torch.equal(base[:, :8], after_later[:, :8])
    assert not torch.allclose(base[:, 8:], after_later[:, 8:])
    assert torch.equal(base[:, :4], after_same[:, :4])
    assert all(not torch.allclose(base[:, i], after_same[:, i]) for i in range(4, 12))


def test_block_causal_mask_is_llada2_generate_mask():
    """Without padding: LLaDA2's generate builds tril(ones(n, n)) repeated block_length times along both axes, then
    takes its log (0 allowed, -inf not)."""
    n_blocks, block = 3, 4
    reference = torch.tril(torch.ones(n_blocks, n_blocks)).repeat_interleave(block, 0).repeat_interleave(block, 1).log()
    got = block_causal_mask(torch.ones(2, n_blocks * block, dtype=torch.long), block, torch.float32)
    assert got.shape == (2, 1, 12, 12) and torch.equal(got[0, 0], reference) and torch.equal(got[1, 0], reference)
    padded = block_causal_mask(torch.tensor([[1] * 10 + [0, 0]]), block, torch.float32)
    assert torch.isinf(padded[0, 0, :, 10:]).all() and torch.equal(padded[0, 0, :, :10], reference[:, :10])


def test_the_hub_code_makes_a_padded_2d_mask_causal_so_the_denoiser_passes_4d(llada2):
    """The quirk the denoiser avoids: the raw model given a 2-D mask with padding attends causally (position 2 does
    not see position 6); through the denoiser (one block of 32) it does."""
    ids = random_ids(llada2, (1, 10), seed=2)
    changed = ids.clone()
    changed[0, 6] = 42 if int(ids[0, 6]) != 42 else 43
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    with torch.no_grad():
        raw = [llada2.model(input_ids=x, attention_mask=mask).logits for x in (ids, changed)]
        den = [llada2.logits(x, attention_mask=mask) for x in (ids, changed)]
    assert torch.equal(raw[0][:, :6], raw[1][:, :6])
    assert not torch.allclose(den[0][:, 2], den[1][:, 2])


def test_llada2_padded_rows_decode_as_alone(llada2):
    prompts = [llada2.tokenizer(p, add_special_tokens=False).input_ids for p in ["hello ", "ab", "the quick ", "xy"]]
    config = DecodeConfig(gen_length=8, steps=4, block_length=4)
    runs = [generate_batched(llada2, prompts, build_sampler("confidence"), config, seeds=[0, 1, 2, 3],
                             batch_size=size, progress=False) for size in (1, 4)]
    assert [r.tokens for r in runs[0]] == [r.tokens for r in runs[1]]
    assert all(r.nfe == 4 and llada2.mask_id not in r.tokens for r in runs[0])


def test_llada2_logits_equal_the_transformers_4_57_logits(llada2_dir):
    """Same weights, same inputs: the running transformers gives exactly (fp32, max abs diff 0) the logits that
    transformers 4.57 gave (fixtures.remote_code.write_reference_logits); on 5.x through the compatibility layer's
    stand-in for the removed `modeling_attn_mask_utils`, the "default" RoPE init and the recomputed `inv_freq`."""
    from safetensors import safe_open

    from fixtures.remote_code import REFERENCE_LOGITS, stand_in_logits

    with safe_open(str(REFERENCE_LOGITS), "pt") as saved:
        assert saved.metadata()["transformers"].startswith("4.57")
        reference = saved.get_tensor("llada2")
    got = stand_in_logits("llada2", llada2_dir)
    assert got.dtype == torch.float32 and got.shape == reference.shape
    assert float((got - reference).abs().max()) == 0.0


def test_llada2_without_the_compatibility_layer_fails_in_one_line_on_transformers_5(llada2_dir, monkeypatch):
    """The hub code imports `transformers.modeling_attn_mask_utils`, which transformers 5 removed: without the
    compatibility layer, a one-line error naming the model; on 4.x the same code loads."""
    import contextlib

    from boe_eval.errors import ConfigError
    from boe_eval.models import compat

    monkeypatch.setattr(compat, "remote_code_compat", contextlib.nullcontext)
    if compat.transformers_major() < 5:
        assert load_denoiser(llada2_dir) is not None
        return
    for module in [name for name in sys.modules if name.startswith("transformers_modules.")]:
        monkeypatch.delitem(sys.modules, module)  # import the remote code afresh
    with pytest.raises(ConfigError) as err:
        load_denoiser(llada2_dir)
    text = str(err.value)
    assert "\n" not in text and llada2_dir in text and "modeling_attn_mask_utils" in text
    assert f"does not load on transformers {compat.transformers_version()}" in text


def run_boe_eval(model_dir: str, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`boe-eval` on the test task toy_copy (gen_length = block_length = steps = 8) with the model in `model_dir`."""
    pytest.importorskip("hydra", reason="the harness is not in the small transformers-5 venv")
    tasks = str(Path(__file__).parent / "lm_tasks")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "BOE_TEST_TASKS": tasks}
    exe = str(Path(sys.executable).with_name("boe-eval"))
    return subprocess.run(
        [exe, f"hydra.searchpath=[file://{Path(__file__).parent / 'configs'}]", "model=tiny_random", "task=toy_copy",
         f"model.path={model_dir}", f"output_dir={out}", "plot=false", "limit=2", "+progress=false", *overrides],
        capture_output=True, text=True, env=env, cwd=out.parent, timeout=600)


def example_rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for f in (out / "rows").glob("*.jsonl") for line in f.read_text().splitlines()]
    return [r for r in rows if r.get("row_type") == "example"]


@pytest.mark.slow
def test_boe_eval_runs_end_to_end_on_the_llada2_stand_in(llada2_dir, tmp_path):
    proc = run_boe_eval(llada2_dir, tmp_path / "out", "sampler=confidence")
    assert proc.returncode == 0, proc.stderr[-2000:]
    examples = example_rows(tmp_path / "out")
    assert len(examples) == 2 and all(r["model_family"] == "llada2" and r["nfe"] == 8 for r in examples)


# ----------------------------------------------------------------------------- DiffusionGemma
def write_diffusion_gemma_config(path: Path, canvas_length: int = 8) -> str:
    """A config.json as transformers 5 saves DiffusionGemma's (what the pre-flight reads), without weights."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({
        "architectures": ["DiffusionGemmaForBlockDiffusion"], "model_type": "diffusion_gemma",
        "canvas_length": canvas_length, "text_config": {"model_type": "diffusion_gemma_text", "pad_token_id": 0}}))
    return str(path)


@pytest.mark.parametrize("sampler, gen, block, message", [
    ("boe", 8, 8, "sampler=boe does not apply to DiffusionGemma"),
    ("remdm_cap", 8, 8, "sampler=remdm_cap does not apply to DiffusionGemma"),
    ("confidence", 16, 8, "set gen_length=8 block_length=8"),
    ("eb", 8, 4, "set gen_length=8 block_length=8"),
])
def test_diffusion_gemma_runs_that_cannot_work_are_refused_before_loading(sampler, gen, block, message, tmp_path):
    from boe_eval.errors import ConfigError
    from boe_eval.models.loading import check_model_fits_run

    path = write_diffusion_gemma_config(tmp_path / "dg")
    with pytest.raises(ConfigError) as err:
        check_model_fits_run(path, sampler, gen, block)
    assert "\n" not in str(err.value) and message in str(err.value)
    for allowed in ("confidence", "margin", "entropy", "random", "threshold", "factor", "eb"):
        check_model_fits_run(path, allowed, 8, 8)


def test_diffusion_gemma_on_a_transformers_without_it_is_one_line(tmp_path):
    import transformers

    from boe_eval.errors import ConfigError

    if hasattr(transformers, "DiffusionGemmaForBlockDiffusion"):
        pytest.skip(f"transformers {transformers.__version__} has DiffusionGemma")
    path = write_diffusion_gemma_config(tmp_path / "dg")
    with pytest.raises(ConfigError) as err:
        load_denoiser(path)
    text = str(err.value)
    assert "\n" not in text and "pip install" in text
    assert f"transformers {transformers.__version__} does not have" in text


@pytest.fixture(scope="module")
def diffusion_gemma(diffusion_gemma_dir):
    return load_denoiser(diffusion_gemma_dir)


def test_diffusion_gemma_loads_with_its_placeholder_and_canvas(diffusion_gemma):
    from boe_eval.models import DiffusionGemmaDenoiser

    den = diffusion_gemma
    assert type(den) is DiffusionGemmaDenoiser and den.family == "diffusion_gemma"
    assert den.mask_id == den.tokenizer.pad_token_id == den.model.config.text_config.pad_token_id
    image_ids = {den.model.config.boi_token_id, den.model.config.eoi_token_id, den.model.config.image_token_id}
    assert set(den.forbidden_ids) == image_ids | {den.mask_id}
    assert den.canvas_length == 8 and den.vocab_size == len(den.tokenizer) and den.max_length == 512
    assert den.honours_padding_mask is True  # measured by the probe


def test_diffusion_gemma_logits_are_the_models_canvas_logits_on_noised_slots(diffusion_gemma):
    """The prompt goes to the encoder, the last canvas_length positions to the decoder with every placeholder slot
    replaced by the row's own uniform noise; the prompt positions get zeros; a right-padded row gets its logits
    alone; other rows in the batch change nothing."""
    from boe_eval.models.diffusion_gemma import row_noise

    den = diffusion_gemma
    ids = torch.randint(4, 100, (2, 13), generator=torch.Generator().manual_seed(0))
    ids[:, 5:] = den.mask_id
    ids[0, 7], ids[0, 10] = 42, 43  # two committed slots in row 0's canvas
    ids[1, 12] = den.pad_id  # row 1: prompt of 4 (positions 0-3) + canvas 8 (4-11) + one padded position
    ids[1, 4:12] = den.mask_id
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 12] = 0
    with torch.no_grad():
        got = den.logits(ids, attention_mask=attention_mask)
        for row, (context, end) in enumerate([(5, 13), (4, 12)]):
            canvas = ids[row, context:end].clone()
            noisy = (canvas == den.mask_id).nonzero(as_tuple=True)[0] + context
            canvas[noisy - context] = row_noise(ids[row, :end], noisy, den.vocab_size)
            assert len(noisy) == (6 if row == 0 else 8)  # (the noise is uniform over the whole vocabulary)
            expected = den.model(input_ids=ids[row : row + 1, :context], decoder_input_ids=canvas[None]).logits[0]
            torch.testing.assert_close(got[row, context:end], expected, rtol=0, atol=1e-5)
            assert torch.equal(got[row, :context], torch.zeros_like(got[row, :context]))
            alone = den.logits(ids[row : row + 1, :end])
            torch.testing.assert_close(got[row, :end], alone[0], rtol=0, atol=1e-5)
    assert float(got[:, 5:12].std()) > 0.1


def test_diffusion_gemma_reference_sampler_equals_transformers_generate(diffusion_gemma):
    """entropy_bound_generate restates transformers' DiffusionGemma generate: same seed, same tokens and the same
    decoder forwards (tokens_per_forward = new tokens / forwards), also when rows stop early."""
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import EntropyBoundSamplerConfig

    from boe_eval.models.diffusion_gemma import entropy_bound_generate

    model = diffusion_gemma.model
    ids = torch.randint(4, 100, (2, 5), generator=torch.Generator().manual_seed(3))
    text_config = model.config.text_config
    special = dict(pad_token_id=text_config.pad_token_id, eos_token_id=text_config.eos_token_id)
    settings = [dict(max_new_tokens=24, max_denoising_steps=6, entropy_bound=2.0),
                # nearly greedy: every slot accepted, the canvas reaches a fixed point and rows stop early
                dict(max_new_tokens=16, max_denoising_steps=12, entropy_bound=0.1, t_min=0.01, t_max=0.02)]
    stopped_early = False
    for kw in settings:
        hf = {k: v for k, v in kw.items() if k != "entropy_bound"}
        torch.manual_seed(11)
        bound = EntropyBoundSamplerConfig(entropy_bound=kw["entropy_bound"])
        out = model.generate(ids, sampler_config=bound, **special, **hf)
        torch.manual_seed(11)
        tokens, forwards = entropy_bound_generate(model, ids, **special, **kw)
        assert torch.equal(out.sequences[:, 5:], tokens)
        valid = (tokens != special["pad_token_id"]).sum(-1)
        torch.testing.assert_close(out.tokens_per_forward, valid / forwards)
        canvases = -(-kw["max_new_tokens"] // 8)
        stopped_early |= bool((forwards < canvases * kw["max_denoising_steps"]).any())
    assert stopped_early  # the stable-and-confident stop was exercised


@pytest.mark.parametrize("sampler", ["confidence", "eb"])
def test_diffusion_gemma_decodes_in_the_loop_batch_invariantly(diffusion_gemma, sampler):
    den = diffusion_gemma
    prompts = [den.tokenizer(p, add_special_tokens=False).input_ids for p in ["hello ", "ab", "the quick ", "xy"]]
    config = DecodeConfig(gen_length=8, steps=4, block_length=8)
    runs = [generate_batched(den, prompts, build_sampler(sampler), config, seeds=[0, 1, 2, 3], batch_size=size,
                             progress=False) for size in (1, 4)]
    assert [r.tokens for r in runs[0]] == [r.tokens for r in runs[1]]
    assert all(len(r.tokens) == 8 and den.mask_id not in r.tokens for r in runs[0])
    if sampler == "confidence":
        assert all(r.nfe == 4 for r in runs[0])


@pytest.mark.slow
def test_boe_eval_runs_end_to_end_on_the_diffusion_gemma_stand_in(diffusion_gemma_dir, tmp_path):
    """Needs transformers 5 and the harness together (not in CI's small transformers-5 venv)."""
    for sampler in ("confidence", "eb"):
        proc = run_boe_eval(diffusion_gemma_dir, tmp_path / "out", f"sampler={sampler}")
        assert proc.returncode == 0, proc.stderr[-2000:]
    examples = example_rows(tmp_path / "out")
    assert sorted(r["sampler"] for r in examples) == ["confidence", "confidence", "eb", "eb"]
    assert all(r["model_family"] == "diffusion_gemma" for r in examples)
    assert all(r["nfe"] == 8 for r in examples if r["sampler"] == "confidence")
    refused = run_boe_eval(diffusion_gemma_dir, tmp_path / "refused", "sampler=boe")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].endswith(
        "sampler=boe does not apply to DiffusionGemma (a uniform-noise canvas without a mask token: no re-masking, "
        "no look-ahead on soft inputs): choose one of confidence, margin, entropy, random, threshold, factor, eb")
