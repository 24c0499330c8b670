"""The decoding loop: batching invariance, schedule, metering, LLaDA equivalence, stopping."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from boe_eval.errors import ConfigError
from boe_eval.decoding import DecodeConfig, generate, generate_batched, uniform_budgets
from boe_eval.samplers import build_sampler

PROMPTS = ["hello ", "a", "the quick brown ", "xyz12", "q"]


def encode(denoiser, texts):
    return [denoiser.tokenizer(t, add_special_tokens=False).input_ids for t in texts]


def llada_reference_generate(model, prompt: list[int], mask_id: int, forbidden: list[int], gen_length: int,
                             steps: int, block_length: int) -> list[int]:
    """Straightforward re-statement of LLaDA's `generate` (low_confidence remasking, T=0, one
    prompt, no padding), written independently of boe_eval's loop."""
    x = torch.tensor([prompt + [mask_id] * gen_length])
    p = len(prompt)
    num_blocks = gen_length // block_length
    steps_b = steps // num_blocks
    for b in range(num_blocks):
        lo, hi = p + b * block_length, p + (b + 1) * block_length
        n = int((x[0, lo:hi] == mask_id).sum())
        counts = [n // steps_b + (1 if i < n % steps_b else 0) for i in range(steps_b)]
        for k in counts:
            with torch.no_grad():
                logits = model(input_ids=x).logits
            logits[..., forbidden] = float("-inf")
            x0 = logits.argmax(-1)
            conf = F.softmax(logits.double(), dim=-1).gather(-1, x0[..., None]).squeeze(-1)
            conf[:, hi:] = float("-inf")
            conf[:, :lo] = float("-inf")
            conf = torch.where(x == mask_id, conf, torch.tensor(float("-inf"), dtype=conf.dtype))
            idx = torch.topk(conf[0], k).indices
            x[0, idx] = x0[0, idx]
    return x[0, p:].tolist()


def test_uniform_budgets_match_llada_schedule():
    n = torch.tensor([10, 7, 3])
    got = uniform_budgets(n, 4)
    expected = [[3, 3, 2, 2], [2, 2, 2, 1], [1, 1, 1, 0]]
    assert got.tolist() == expected
    assert got.sum(1).tolist() == n.tolist()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(gen_length=0, steps=1), "gen_length"),
        (dict(gen_length=16, steps=0), "steps"),
        (dict(gen_length=16, steps=8, block_length=5), "block_length=5"),
        (dict(gen_length=16, steps=5, block_length=8), "steps=5"),
        (dict(gen_length=16, steps=32), "steps=32"),
        (dict(gen_length=16, steps=8, temperature=-1.0), "temperature"),
    ],
)
def test_bad_layouts_are_refused_with_the_field_named(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        DecodeConfig(**kwargs).validate()


@pytest.mark.parametrize("name", ["confidence", "margin", "entropy", "random"])
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_batch_size_one_equals_batch_size_n(tiny_bert, name, temperature):
    prompts = encode(tiny_bert, PROMPTS)
    config = DecodeConfig(gen_length=16, steps=8, block_length=8, temperature=temperature)
    seeds = [11, 12, 13, 14, 15]
    single = [generate(tiny_bert, [p], build_sampler(name), config, [s])[0].tokens for p, s in zip(prompts, seeds)]
    batched = generate_batched(tiny_bert, prompts, build_sampler(name), config, seeds, batch_size=3, progress=False)
    assert [r.tokens for r in batched] == single
    assert all(tiny_bert.mask_id not in t for t in single)


def test_nfe_equals_forward_calls_equals_steps(tiny_bert):
    calls = []
    handle = tiny_bert.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        config = DecodeConfig(gen_length=16, steps=8, block_length=4)
        out = generate(tiny_bert, encode(tiny_bert, PROMPTS[:2]), build_sampler("confidence"), config)
    finally:
        handle.remove()
    assert len(calls) == 8
    assert [r.nfe for r in out] == [8, 8]
    assert [r.forwards for r in out] == [8, 8]
    assert [r.backwards for r in out] == [0, 0]
    # tokens processed = real (non-padding) positions per forward
    lengths = [len(p) + 16 for p in encode(tiny_bert, PROMPTS[:2])]
    assert [r.tokens_processed for r in out] == [8 * n for n in lengths]


@pytest.mark.parametrize("gen_length, steps, block_length", [(16, 16, 16), (16, 8, 16), (16, 8, 4), (12, 6, 4)])
def test_confidence_equals_llada_reference_loop(tiny_bert, gen_length, steps, block_length):
    config = DecodeConfig(gen_length=gen_length, steps=steps, block_length=block_length)
    for prompt in encode(tiny_bert, PROMPTS[:3]):
        ours = generate(tiny_bert, [prompt], build_sampler("confidence"), config)[0].tokens
        ref = llada_reference_generate(
            tiny_bert.model, prompt, tiny_bert.mask_id, list(tiny_bert.forbidden_ids), gen_length, steps, block_length
        )
        assert ours == ref


def test_commits_stay_inside_the_current_block(tiny_bert):
    config = DecodeConfig(gen_length=12, steps=6, block_length=4, record_trajectory=True)
    out = generate(tiny_bert, encode(tiny_bert, ["abc"]), build_sampler("entropy"), config)[0]
    # 2 steps per block, 2 tokens per step: steps 0-1 write block 0, 2-3 block 1, 4-5 block 2
    for entry in out.trajectory:
        block = entry["step"] // 2
        assert all(block * 4 <= pos < (block + 1) * 4 for pos in entry["committed"])
        assert len(entry["committed"]) == 2
    entropies = [e["masked_entropy"] for e in out.trajectory]
    assert len(entropies) == 6 and all(e >= 0 for e in entropies)


class _ScriptedModel(torch.nn.Module):
    """A fake masked LM whose prediction at every slot is a fixed token with a fixed confidence."""

    def __init__(self, vocab: int, token_at: dict[int, int], strength_at: dict[int, float]):
        super().__init__()
        self.vocab, self.token_at, self.strength_at = vocab, token_at, strength_at
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Cfg", (), {"_name_or_path": "scripted"})()

    def get_input_embeddings(self):
        return torch.nn.Embedding(self.vocab, 4)

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None):
        b, length = input_ids.shape
        logits = torch.zeros(b, length, self.vocab)
        for pos in range(length):
            tok = self.token_at.get(pos, 10)
            logits[:, pos, tok] = self.strength_at.get(pos, 1.0)
        return type("Out", (), {"logits": logits})()


def _scripted_denoiser(token_at, strength_at, suppress=()):
    from boe_eval.models.denoiser import Denoiser
    from boe_eval.tiny.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    model = _ScriptedModel(len(tok), token_at, strength_at)
    return Denoiser(model, tok, mask_id=tok.mask_token_id, suppress_ids=suppress,
                    forbidden_ids=[tok.pad_token_id], name="scripted")


def test_suppressed_tokens_get_minus_infinite_confidence():
    # prompt of 1 token; generation slots 1..4. Slot 1 predicts EOS with the highest logit.
    eos = 2
    den = _scripted_denoiser({1: eos, 2: 40, 3: 41, 4: 42}, {1: 9.0, 2: 3.0, 3: 2.0, 4: 1.0}, suppress=[eos])
    out = generate(den, [[50]], build_sampler("confidence"), DecodeConfig(gen_length=4, steps=4, record_trajectory=True))[0]
    order = [e["committed"][0] for e in out.trajectory]
    assert order == [1, 2, 3, 0]  # EOS slot (gen position 0) is written last
    den_plain = _scripted_denoiser({1: eos, 2: 40, 3: 41, 4: 42}, {1: 9.0, 2: 3.0, 3: 2.0, 4: 1.0})
    out = generate(den_plain, [[50]], build_sampler("confidence"), DecodeConfig(gen_length=4, steps=4, record_trajectory=True))[0]
    assert [e["committed"][0] for e in out.trajectory] == [0, 1, 2, 3]


def test_early_stop_counts_nfe_to_the_stop_string():
    # tokens: '7' at gen slot 0 (most confident), '.' at slot 1, then filler; stop string '.'
    den = _scripted_denoiser({1: 27, 2: 18, 3: 40, 4: 41, 5: 42, 6: 43}, {1: 9, 2: 8, 3: 1, 4: 1, 5: 1, 6: 1})
    dot = den.tokenizer(".", add_special_tokens=False).input_ids[0]
    seven = den.tokenizer("7", add_special_tokens=False).input_ids[0]
    den.model.token_at.update({1: seven, 2: dot})
    full = generate(den, [[50]], build_sampler("confidence"), DecodeConfig(gen_length=6, steps=6, until=(".",)))[0]
    assert full.text == "7" and full.nfe == 6 and full.nfe_to_stop == 2 and not full.stopped_early
    early = generate(den, [[50]], build_sampler("confidence"),
                     DecodeConfig(gen_length=6, steps=6, until=(".",), early_stop=True))[0]
    assert early.text == "7" and early.nfe == 2 and early.stopped_early


def test_models_that_ignore_padding_get_equal_length_batches(tiny_bert):
    tiny_bert.honours_padding_mask = False
    try:
        prompts = encode(tiny_bert, PROMPTS)
        with pytest.raises(ValueError, match="equal length"):
            generate(tiny_bert, prompts[:2], build_sampler("confidence"), DecodeConfig(gen_length=8, steps=8))
        seen = []
        original = tiny_bert.model.forward

        def spy(*args, **kwargs):
            seen.append(kwargs["attention_mask"].sum(1).unique().numel())
            return original(*args, **kwargs)

        tiny_bert.model.forward = spy
        generate_batched(tiny_bert, prompts, build_sampler("confidence"), DecodeConfig(gen_length=8, steps=8),
                         list(range(5)), batch_size=4, progress=False)
        assert set(seen) == {1}
    finally:
        tiny_bert.honours_padding_mask = True
        tiny_bert.model.forward = original


def test_canvas_longer_than_the_position_table_is_a_clear_error(tiny_bert):
    prompt = encode(tiny_bert, ["x" * 250])
    with pytest.raises(ConfigError, match=r"= 266 exceeds the 256 positions"):
        generate(tiny_bert, prompt, build_sampler("confidence"), DecodeConfig(gen_length=16, steps=16))
