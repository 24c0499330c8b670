"""SEDD-absorb behind the Denoiser contract (boe_eval/models/sedd.py; TABES Table 4's SEDD row) on a tiny random
stand-in of SEDD's architecture saved in the Hub layout SEDD publishes (config.json + model.safetensors) with the
grammar's tokenizer: the loader's dispatch and mask id, the time -> sigma map, the score -> p(x0 | x_t) conversion
against a restatement of SEDD's own Tweedie denoiser step, and a run end to end."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boe_eval.models.loading import BUILTIN_DIR, load_denoiser, read_config
from boe_eval.models.sedd import LOG_ZERO, NOISE_EPS, SEDDDenoiser, SEDDNet

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def sedd_config(tokens: int) -> dict:
    """SEDD's Hydra config as its Hub config.json holds it (configs/config.yaml + model/small.yaml), scaled down."""
    return {"ngpus": 1, "tokens": tokens, "graph": {"type": "absorb", "file": "data", "report_all": False},
            "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
            "model": {"name": "tiny", "type": "ddit", "hidden_size": 32, "cond_dim": 16, "length": 64, "n_blocks": 2,
                      "n_heads": 4, "scale_by_sigma": True, "dropout": 0.1}}


@pytest.fixture(scope="module")
def sedd_dir(tmp_path_factory) -> Path:
    """Random SEDDNet over the grammar tokenizer's 68 ids (mask = id 68), every layer non-zero (SEDD zero-inits
    its adaLN and output layers, which would make the score uniform)."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("sedd_tiny")
    for name in TOKENIZER_FILES:
        shutil.copy(BUILTIN_DIR / "tiny_grammar" / name, path / name)
    tokens = len(json.loads((BUILTIN_DIR / "tiny_grammar" / "tokenizer.json").read_text())["model"]["vocab"])
    config = sedd_config(tokens)
    torch.manual_seed(0)
    model = SEDDNet(config)
    (path / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    return path


@pytest.fixture(scope="module")
def sedd(sedd_dir) -> SEDDDenoiser:
    return load_denoiser(sedd_dir)


def test_loader_recognises_seddss_config_and_uses_the_extra_row_as_mask(sedd, sedd_dir):
    config = json.loads((sedd_dir / "config.json").read_text())
    assert read_config(sedd_dir)["model_type"] == "sedd"
    assert isinstance(sedd, SEDDDenoiser) and sedd.time_conditioned and sedd.family == "sedd"
    assert sedd.mask_id == config["tokens"] == sedd.vocab_size - 1
    assert sedd.mask_id in sedd.forbidden_ids


def test_time_maps_to_sedd_loglinear_sigma(sedd, monkeypatch):
    """1 - e^{-sigma} = (1 - eps) t (noise_lib.LogLinearNoise.total_noise)."""
    seen = []
    forward = sedd.model.forward
    monkeypatch.setattr(sedd.model, "forward", lambda ids, sigma, **kw: seen.append(sigma) or forward(ids, sigma, **kw))
    t = torch.tensor([0.25, 1.0])
    sedd.logits(torch.full((2, 6), sedd.mask_id), timestep=t)
    assert torch.allclose(1 - torch.exp(-seen[0]), (1 - NOISE_EPS) * t, atol=1e-6)


def sedd_tweedie_probs(log_score: torch.Tensor, indices: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """SEDD's `sampling.Denoiser.update_fn` restated (dsigma = sigma): score = exp(model output);
    `Absorbing.staggered_score`: non-mask entries times e^{sigma}, the mask entry plus (1 - e^{sigma}) sum(score);
    times `Absorbing.transp_transition(x, sigma)`: e^{-sigma} onehot(x) + (1 - e^{-sigma}) where x is the mask;
    the mask column dropped, then normalised (sample_categorical samples from the normalised vector)."""
    score = log_score.double().exp()
    dim = score.shape[-1]
    s = sigma.double()[:, None, None]
    stag = score * s.exp()
    stag[..., -1] = score[..., -1] * s[..., 0].exp() + (1 - s[..., 0].exp()) * score.sum(-1)
    onehot = torch.nn.functional.one_hot(indices, dim).double()
    transition = (-s).exp() * onehot + torch.where(indices == dim - 1, 1 - (-s[..., 0]).exp(), 0.0)[..., None]
    probs = (stag * transition)[..., :-1]
    return probs / probs.sum(-1, keepdim=True)


def test_converted_probabilities_are_sedd_tweedie_denoiser(sedd):
    """At masked positions exp(logits) sums to 1 over the non-mask ids and equals SEDD's own denoising step on the
    raw score; unmasked positions carry their token; the mask column is (numerically) 0; logits are finite."""
    torch.manual_seed(1)
    ids = torch.randint(0, sedd.mask_id, (3, 10))
    ids[:, ::2] = sedd.mask_id
    t = torch.tensor([0.9, 0.5, 0.1])
    sigma = -torch.log1p(-(1 - NOISE_EPS) * t)
    with torch.no_grad():
        log_probs = sedd.logits(ids, timestep=t).double()
        raw = sedd.model(ids, sigma)
    assert torch.isfinite(log_probs).all()
    masked = ids == sedd.mask_id
    probs = log_probs.exp()
    assert torch.allclose(probs[masked][:, : sedd.mask_id].sum(-1), torch.ones(int(masked.sum()), dtype=torch.float64))
    assert probs[..., sedd.mask_id].max() < 1e-25
    expected = sedd_tweedie_probs(raw, ids, sigma)
    assert torch.allclose(probs[masked][:, : sedd.mask_id], expected[masked], atol=1e-6)
    # the hand form of the same: p_y = s_y (e^sigma - 1) / sum_{y' != mask} s_y' (e^sigma - 1)
    weighted = raw.double().exp()[..., : sedd.mask_id] * torch.expm1(sigma.double())[:, None, None]
    assert torch.allclose(probs[masked][:, : sedd.mask_id], (weighted / weighted.sum(-1, keepdim=True))[masked], atol=1e-6)
    carried = probs[~masked].argmax(-1)
    assert torch.equal(carried, ids[~masked]) and torch.allclose(probs[~masked].max(-1).values, torch.ones(1, dtype=torch.float64))
    # the network is time-conditioned: another t gives another distribution
    other = sedd.logits(ids, timestep=torch.tensor([0.2, 0.2, 0.2])).double().exp()
    assert not torch.allclose(other[masked], probs[masked], atol=1e-4)


def test_soft_inputs_match_ids(sedd):
    """BoE's surrogate forward feeds x_t's own embeddings: the same log p(x0 | x_t) as the ids."""
    ids = torch.randint(0, sedd.mask_id, (2, 8), generator=torch.Generator().manual_seed(2))
    ids[:, 1::3] = sedd.mask_id
    t = torch.tensor([0.4, 0.7])
    with torch.no_grad():
        assert torch.allclose(sedd.logits(ids, timestep=t), sedd.logits(inputs_embeds=sedd.embed(ids), timestep=t), atol=1e-5)


def test_generate_runs_on_the_stand_in(sedd):
    from boe_eval.decoding import DecodeConfig, generate
    from boe_eval.samplers import build_sampler

    for sampler in ("confidence", "remdm_cap", "boe"):
        results = generate(sedd, [[]] * 2, build_sampler(sampler), DecodeConfig(gen_length=16, steps=8), seeds=[0, 1])
        assert len(results) == 2 and all(r.text.strip() for r in results)


@pytest.mark.slow
def test_boe_eval_runs_end_to_end_on_the_stand_in(sedd_dir, tmp_path):
    pytest.importorskip("hydra")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    exe = str(Path(sys.executable).with_name("boe-eval"))
    proc = subprocess.run([exe, "model=sedd_owt", f"model.path={sedd_dir}", "model.device=cpu", "task=uncond_grammar",
                           "sampler=confidence", "limit=2", f"output_dir={out}", "plot=false", "+progress=false"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for f in (out / "rows").glob("*.jsonl") for line in f.read_text().splitlines()]
    examples = [r for r in rows if r.get("row_type") == "example"]
    assert len(examples) == 2 and all(r["model_family"] == "sedd" for r in examples)
    assert "mauve" in proc.stdout.lower() or "mauve" in (proc.stdout + proc.stderr).lower()


def test_table4_sedd_sweep_plans_the_sedd_row(sedd_dir, tmp_path, monkeypatch):
    """configs/sweep/paper_table4_sedd.yaml: the SEDD row (ancestral, eta = 0) at T = 128, 256, 512 on owt_uncond,
    beside MDLM's rows (results/paper_table4/sedd_owt)."""
    monkeypatch.setenv("BOE_UNCOND_REFERENCE", str(Path(__file__).resolve().parents[1] / "tasks" / "uncond_grammar"
                                                   / "data" / "reference.jsonl"))
    from hydra import compose, initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR
    from boe_eval.harness.sweep import plan_sweep

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["sweep=paper_table4_sedd", f"model.path={sedd_dir}",
                                                       "model.device=cpu"])
    assert cfg.output_dir == "results/paper_table4/sedd_owt"
    cfg.output_dir = str(tmp_path)
    cells = plan_sweep(cfg)
    assert [(c.entry.label, c.spec.sampler, c.spec.steps) for c in cells] == [
        ("sedd", "remdm_cap", 128), ("sedd", "remdm_cap", 256), ("sedd", "remdm_cap", 512)]
    assert all(c.spec.sampler_params["eta"] == 0.0 and c.spec.temperature == 1.0 for c in cells)


def _stub_modules() -> dict:
    """Test-only stand-ins for what SEDD's transformer.py imports and CPU lacks: einops' `rearrange` for its three
    patterns, and flash_attn's varlen call as full bidirectional attention over equal-length rows (what SEDD's
    call computes: seqlens=None, causal=False). `flash_attn.layers` is absent, so SEDD's rotary takes its own
    torch fallback."""
    import types

    def rearrange(x, pattern, **kw):
        if pattern == "b s (three h d) -> b s three h d":
            return x.view(x.shape[0], x.shape[1], kw["three"], kw["h"], -1)
        if pattern == "b s ... -> (b s) ...":
            return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
        if pattern == "(b s) h d -> b s (h d)":
            return x.reshape(kw["b"], x.shape[0] // kw["b"], x.shape[1] * x.shape[2])
        raise NotImplementedError(pattern)

    def varlen(qkv, cu_seqlens, max_seqlen, dropout_p, causal=False):
        n, _, h, d = qkv.shape
        q, k, v = qkv.view(n // max_seqlen, max_seqlen, 3, h, d).permute(2, 0, 3, 1, 4)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return out.transpose(1, 2).reshape(n, h, d)

    einops = types.ModuleType("einops")
    einops.rearrange = rearrange
    flash = types.ModuleType("flash_attn")
    interface = types.ModuleType("flash_attn.flash_attn_interface")
    interface.flash_attn_varlen_qkvpacked_func = varlen
    flash.flash_attn_interface = interface
    return {"einops": einops, "flash_attn": flash, "flash_attn.flash_attn_interface": interface}


def test_restated_network_equals_sedds_own_class(sedd, sedd_dir, monkeypatch):
    """With $SEDD_REPO naming a checkout of louaaron/Score-Entropy-Discrete-Diffusion: SEDD's own `model.SEDD`
    takes the stand-in's state dict strictly and gives the same log score (float32, CPU; flash_attn and einops
    stubbed). Skipped without the checkout (the project does not vendor SEDD's code)."""
    repo = os.environ.get("SEDD_REPO")
    if not repo or not (Path(repo) / "model" / "transformer.py").is_file():
        pytest.skip("set $SEDD_REPO to a checkout of louaaron/Score-Entropy-Discrete-Diffusion")
    pytest.importorskip("omegaconf")
    pytest.importorskip("huggingface_hub")
    for name, module in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in [m for m in sys.modules if m == "model" or m.startswith("model.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(repo)
    import importlib

    reference_class = importlib.import_module("model.transformer").SEDD
    config = json.loads((sedd_dir / "config.json").read_text())
    reference = reference_class(config).eval()
    reference.load_state_dict(sedd.model.state_dict(), strict=True)
    ids = torch.randint(0, config["tokens"] + 1, (3, 24), generator=torch.Generator().manual_seed(0))
    ids[:, ::3] = config["tokens"]
    sigma = torch.tensor([0.1, 1.0, 6.0])
    with torch.no_grad():
        expected, got = reference(ids, sigma).float(), sedd.model(ids, sigma).float()
    assert torch.allclose(got, expected, atol=1e-5)
    for name in [m for m in sys.modules if m == "model" or m.startswith("model.")]:
        del sys.modules[name]
