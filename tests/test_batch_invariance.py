"""Batch invariance in the dtype users run (issue 19 item 5): with canonical canvas widths a bf16 row has the same
shapes alone and in a batch, and on CPU its logits and tokens are then bit-identical (README "Batch invariance").
The prompts are the vendored GSM8K d1 prompts, the model the Dream stand-in (its remote code) in bfloat16."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fixtures.models import dream_dir  # noqa: F401  (pytest fixture)

from boe_eval.decoding import DecodeConfig, generate_batched
from boe_eval.decoding.canvas import canonical_width
from boe_eval.decoding.loop import batch_groups, canvas_multiple
from boe_eval.errors import ConfigError
from boe_eval.models import load_denoiser
from boe_eval.models.flops import flop_model
from boe_eval.samplers import build_sampler

GSM8K = Path(__file__).resolve().parents[1] / "tasks" / "gsm8k"
#: four test documents whose d1 prompts have four different lengths (372-399 characters) and one canonical width
#: (416 with gen_length 16); decoded at the prompt's own width, batch 4 wrote 2 tokens of one row differently
DOCS = [23, 24, 34, 36]


def d1_prompts(tokenizer, docs):
    spec = importlib.util.spec_from_file_location("gsm8k_utils", GSM8K / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    lines = (GSM8K / "data" / "test.jsonl").read_text().splitlines()
    texts = [utils.d1_prompt(json.loads(lines[i])) + "\n<reasoning>" for i in docs]
    return [tokenizer(t, add_special_tokens=False).input_ids for t in texts]


@pytest.fixture(scope="module")
def dream_bf16(dream_dir):
    return load_denoiser(dream_dir, dtype="bfloat16")


def test_canonical_width_rounds_up_and_respects_the_position_table():
    assert canonical_width(372, 16, 32) == 416 and canonical_width(400, 16, 32) == 416
    assert canonical_width(401, 16, 32) == 448 and canonical_width(401, 16, 0) == 417
    assert canonical_width(401, 16, 32, max_length=430) == 430  # capped ...
    assert canonical_width(420, 16, 32, max_length=430) == 436  # ... never below the canvas itself


def test_the_multiple_follows_the_dtype_and_never_pads_a_model_that_ignores_padding():
    def model(dtype, honours=True):
        return SimpleNamespace(dtype=dtype, honours_padding_mask=honours, max_length=None)

    assert canvas_multiple(model(torch.bfloat16), DecodeConfig()) == 32
    assert canvas_multiple(model(torch.float16), DecodeConfig()) == 32
    assert canvas_multiple(model(torch.float32), DecodeConfig()) == 0
    assert canvas_multiple(model(torch.float32), DecodeConfig(canvas_multiple=8)) == 8
    assert canvas_multiple(model(torch.bfloat16, honours=False), DecodeConfig()) == 0
    with pytest.raises(ConfigError, match="canvas_multiple=-1"):
        canvas_multiple(model(torch.bfloat16), DecodeConfig(canvas_multiple=-1))


def test_batches_hold_rows_of_one_canonical_width():
    lengths = [10, 40, 12, 41, 20, 70, 5, 39]  # widths with gen 8, multiple 16: 32 48 32 64 32 80 16 48
    prompts = [[1] * n for n in lengths]
    model = SimpleNamespace(dtype=torch.bfloat16, honours_padding_mask=True, max_length=None)
    groups = batch_groups(model, prompts, DecodeConfig(gen_length=8, steps=8, canvas_multiple=16), batch_size=2)
    assert groups == [[6], [0, 2], [4], [1, 7], [3], [5]]
    assert batch_groups(model, prompts, DecodeConfig(gen_length=8, steps=8, canvas_multiple=0), 4) == [
        [0, 1, 2, 3], [4, 5, 6, 7]]


def test_bf16_rows_at_one_width_have_bit_identical_logits_alone_and_in_a_batch(dream_bf16):
    prompts = d1_prompts(dream_bf16.tokenizer, DOCS)
    width = 416
    ids = torch.full((4, width), dream_bf16.pad_id)
    mask = torch.zeros(4, width, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, : len(prompt)] = torch.tensor(prompt)
        ids[i, len(prompt) : len(prompt) + 16] = dream_bf16.mask_id
        mask[i, : len(prompt) + 16] = 1
    with torch.no_grad():
        batch = dream_bf16.logits(ids, attention_mask=mask)
        for i in range(4):
            alone = dream_bf16.logits(ids[i : i + 1], attention_mask=mask[i : i + 1])
            assert torch.equal(alone[0], batch[i])


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_bf16_dream_batch_4_of_gsm8k_d1_prompts_equals_batch_1(dream_bf16, temperature):
    prompts = d1_prompts(dream_bf16.tokenizer, DOCS)
    assert len({len(p) for p in prompts}) == 4
    assert {canonical_width(len(p), 16, 32) for p in prompts} == {416}
    flop_model(dream_bf16)  # its one probe forward (7 positions) made before the shapes are recorded
    seen: list[int] = []
    hook = dream_bf16.model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["input_ids"].shape), with_kwargs=True)
    config = DecodeConfig(gen_length=16, steps=16, temperature=temperature)
    try:
        one = generate_batched(dream_bf16, prompts, build_sampler("confidence"), config, [1, 2, 3, 4], 1, False)
        four = generate_batched(dream_bf16, prompts, build_sampler("confidence"), config, [1, 2, 3, 4], 4, False)
    finally:
        hook.remove()
    assert {tuple(s) for s in seen[:64]} == {(1, 416)} and seen[64] == (4, 416)  # alone and together at one width
    assert [r.tokens for r in four] == [r.tokens for r in one]
