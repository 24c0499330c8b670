"""The stop watcher (issue 19 item 4): checking only what changed gives, step by step, the verdict of the
definition, `EOS in prefix or any(stop in decode(prefix))` over the whole unmasked prefix, recomputed here every
step. Tokenizers: a byte-level BPE trained here (multi-byte characters span several tokens) and the project's
character tokenizer; orders: random unmasking, left to right, and random remasking."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from boe_eval.decoding.canvas import Canvas
from boe_eval.decoding.stopping import StopWatcher

TEXTS = [
    "Natalia sold 48 clips in April. The answer is 72.\n\nQuestion: how many? Answer: 5",
    "Grüße aus Köln 日本語のテキスト 🙂 then </answer> and more text after it",
    "Short one. Question:",
    "x = 3 * 4 = 12 so the total is $12 <|eot_id|> Question: next",
    "no stop string anywhere in this row at all, only plain words and numbers 1 2 3",
]
UNTIL = ("Question:", "</answer>", "日本語")


@pytest.fixture(scope="module")
def byte_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|eot_id|>", "<|mdm_mask|>"], show_progress=False)
    core.train_from_iterator(TEXTS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|eot_id|>", "<|mdm_mask|>"])


@pytest.fixture(scope="module")
def char_tokenizer():
    from boe_eval.tiny.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


def reference_met(tokenizer, eos, tokens, masked) -> bool:
    """The definition: the unmasked prefix contains EOS, or its decoded text contains a stop string."""
    prefix = []
    for t, m in zip(tokens, masked):
        if m:
            break
        prefix.append(t)
    text = tokenizer.decode(prefix, skip_special_tokens=True)
    return eos in prefix or any(s in text for s in UNTIL)


def run(tokenizer, order: str, seed: int):
    rng = random.Random(seed)
    mask_id = tokenizer.convert_tokens_to_ids("<|mdm_mask|>") if "<|mdm_mask|>" in tokenizer.get_vocab() else 0
    eos = tokenizer.eos_token_id
    targets = [tokenizer(t, add_special_tokens=False).input_ids for t in TEXTS]
    gen = max(len(t) for t in targets)
    space = tokenizer(" ", add_special_tokens=False).input_ids[-1]
    targets = [t + [space] * (gen - len(t)) for t in targets]
    prompt = 3
    batch, width = len(targets), prompt + gen
    canvas = Canvas(x=torch.full((batch, width), mask_id), attention_mask=torch.ones(batch, width, dtype=torch.long),
                    is_masked=torch.zeros(batch, width, dtype=torch.bool), gen_start=torch.full((batch,), prompt),
                    gen_region=torch.zeros(batch, width, dtype=torch.bool), positions=torch.arange(width))
    canvas.is_masked[:, prompt:] = True
    canvas.x[:, :prompt] = 7
    denoiser = SimpleNamespace(tokenizer=tokenizer, eos_id=eos)
    watcher = StopWatcher(denoiser, UNTIL, True, gen, batch)
    expected_at: list[int | None] = [None] * batch
    meter = SimpleNamespace(nfe=[0] * batch)
    for step in range(4 * gen):
        meter.nfe = [step] * batch
        for b in range(batch):
            masked = canvas.is_masked[b, prompt:].nonzero().squeeze(1).tolist()
            written = (~canvas.is_masked[b, prompt:]).nonzero().squeeze(1).tolist()
            if order == "remask" and written and rng.random() < 0.3:
                for j in rng.sample(written, min(len(written), rng.randint(1, 3))):
                    canvas.is_masked[b, prompt + j] = True
                    canvas.x[b, prompt + j] = mask_id
            elif masked:
                for j in (masked[:1] if order == "left_to_right" else rng.sample(masked, min(len(masked), 2))):
                    canvas.is_masked[b, prompt + j] = False
                    canvas.x[b, prompt + j] = targets[b][j]
        watcher.update(canvas, torch.arange(batch), meter)
        for b in range(batch):
            if expected_at[b] is None and reference_met(tokenizer, eos, canvas.x[b, prompt:].tolist(),
                                                          canvas.is_masked[b, prompt:].tolist()):
                expected_at[b] = step
    return watcher.nfe_at_stop, expected_at


@pytest.mark.parametrize("order", ["random", "left_to_right", "remask"])
@pytest.mark.parametrize("tokenizer_name", ["byte_bpe", "char_tokenizer"])
def test_incremental_watcher_meets_the_stop_at_the_step_of_the_definition(request, tokenizer_name, order):
    tokenizer = request.getfixturevalue(tokenizer_name)
    for seed in range(4):
        got, expected = run(tokenizer, order, seed)
        assert got == expected
    assert any(e is not None for e in expected) and any(e is None for e in expected)


def test_a_character_split_over_tokens_is_found_when_its_last_byte_arrives(byte_bpe):
    ids = byte_bpe("日本語", add_special_tokens=False).input_ids
    assert len(ids) > 1  # the stop string spans several byte-level tokens
    canvas = Canvas(x=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    is_masked=torch.ones(1, len(ids), dtype=torch.bool), gen_start=torch.tensor([0]),
                    gen_region=torch.ones(1, len(ids), dtype=torch.bool), positions=torch.arange(len(ids)))
    watcher = StopWatcher(SimpleNamespace(tokenizer=byte_bpe, eos_id=None), ("日本語",), True, len(ids), 1)
    for n in range(1, len(ids) + 1):
        canvas.is_masked[0, n - 1] = False
        watcher.update(canvas, torch.tensor([0]), SimpleNamespace(nfe=[n]))
    assert watcher.met == [True] and watcher.nfe_at_stop == [len(ids)]
