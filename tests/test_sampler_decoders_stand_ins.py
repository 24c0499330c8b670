"""The 2025-26 decoders on the tiny LLaDA and Dream stand-ins (remote code of tests/fixtures/remote_code): parity with
the reference restatements on Dream (no suppressed ids; its one-position logit shift is undone by the denoiser),
complete decoding with metered calls on LLaDA (EOS/EoT suppressed, padding mask ignored: prompts one at a time)."""

from __future__ import annotations

import pytest
import torch

from boe_eval.samplers import build_sampler
from fixtures.models import dream, dream_dir, llada, llada_dir  # noqa: F401  (pytest fixtures)
from test_sampler_dus import dus_reference
from test_sampler_fast_dllm import fast_dllm_reference
from test_sampler_info_gain import info_gain_reference
from test_sampler_prophet import prophet_reference
from test_samplers_baselines import PROMPTS, encode, reference_model, run

CASES = {  # sampler parameters, reference call (model, prompt ids, mask id, generator) -> (tokens, calls)
    "threshold": ({"threshold": 0.05}, lambda m, p, mask, g: fast_dllm_reference(m, p, mask, 16, 8, threshold=0.05)),
    "factor": ({"factor": 2.9}, lambda m, p, mask, g: fast_dllm_reference(m, p, mask, 16, 8, factor=2.9)),
    "prophet": ({"early_gap": 0.05, "mid_gap": 0.04, "late_gap": 0.03},
                lambda m, p, mask, g: prophet_reference(m, p, mask, 16, 16, 8, (0.05, 0.04, 0.03))),
    "dus": ({"confidence_threshold": 0.0}, lambda m, p, mask, g: dus_reference(m, p, mask, 16, 8, 2, 1, 0.0)),
    "info_gain": ({"candidate_number": 4, "threshold": None},
                  lambda m, p, mask, g: info_gain_reference(m, p, mask, 16, 16, 8, 4, 0.2, None, g)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_decoders_match_their_references_on_the_dream_stand_in(dream, name):  # noqa: F811
    params, reference = CASES[name]
    for seed, prompt in enumerate(PROMPTS):
        [result] = run(dream, build_sampler(name, **params), [prompt], seeds=[seed], gen_length=16, steps=16,
                       block_length=8)
        tokens, calls = reference(reference_model(dream), encode(dream, prompt), dream.mask_id,
                                  torch.Generator().manual_seed(seed))
        assert result.tokens == tokens and result.nfe == calls


@pytest.mark.parametrize("name", list(CASES))
def test_decoders_complete_every_slot_on_the_llada_stand_in(llada, name):  # noqa: F811
    params, _ = CASES[name]
    for seed, prompt in enumerate(PROMPTS):
        [result] = run(llada, build_sampler(name, **params), [prompt], seeds=[seed], gen_length=16, steps=16,
                       block_length=8)
        assert llada.mask_id not in result.tokens and len(result.tokens) == 16
        assert 1 <= result.nfe == result.forwards and result.backwards == 0
