"""NaN/inf guard (issue 8): an unusable prediction makes that row's step fall back to confidence
order, the fallback is counted in the result and in the rows, and other rows are untouched."""

from __future__ import annotations

import math

import pytest
import torch

from boe_eval.decoding import DecodeConfig, generate
from boe_eval.samplers import build_sampler
from boe_eval.samplers.base import Sampler, SamplerConfig, confidence_fallback, top_k_mask

POISONS = {
    "nan": lambda row: row.fill_(float("nan")),
    "posinf": lambda row: row.__setitem__(5, float("inf")),
    "all_neginf": lambda row: row.fill_(float("-inf")),
}


class PoisonedModel(torch.nn.Module):
    """Fake masked LM: slot p predicts token `token_at[p]` with logit `strength_at[p]`; on forward call
    number `poison_call` (1-based) the prediction at position `poison_pos` is poisoned, in the rows
    whose prompt starts with `poison_marker`."""

    def __init__(self, vocab, token_at, strength_at, poison_call=None, poison_pos=None, poison="nan",
                 poison_marker=None):
        super().__init__()
        self.vocab, self.token_at, self.strength_at = vocab, token_at, strength_at
        self.poison_call, self.poison_pos, self.poison = poison_call, poison_pos, POISONS[poison]
        self.poison_marker = poison_marker
        self.calls = 0
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Cfg", (), {"_name_or_path": "poisoned"})()

    def get_input_embeddings(self):
        return torch.nn.Embedding(self.vocab, 4)

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None):
        self.calls += 1
        b, length = input_ids.shape
        logits = torch.zeros(b, length, self.vocab)
        for pos in range(length):
            logits[:, pos, self.token_at.get(pos, 10)] = self.strength_at.get(pos, 1.0)
        if self.calls == self.poison_call:
            for row in range(b):
                if self.poison_marker is None or int(input_ids[row, 0]) == self.poison_marker:
                    positions = range(length) if self.poison_pos is None else [self.poison_pos]
                    for pos in positions:
                        self.poison(logits[row, pos])
        return type("Out", (), {"logits": logits})()


def poisoned_denoiser(**kwargs):
    from boe_eval.models.denoiser import Denoiser
    from boe_eval.tiny.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    kwargs.setdefault("token_at", {1: 40, 2: 41, 3: 42, 4: 43})
    kwargs.setdefault("strength_at", {1: 1.0, 2: 4.0, 3: 3.0, 4: 2.0})
    model = PoisonedModel(len(tok), **kwargs)
    return Denoiser(model, tok, mask_id=tok.mask_token_id, forbidden_ids=[tok.pad_token_id], name="poisoned")


class LeftToRight(Sampler):
    """A policy whose order differs from confidence order: leftmost masked slot first."""

    name = "left_to_right"

    def select(self, ctx):
        from boe_eval.decoding import StepDecision

        return StepDecision(commit=top_k_mask(-ctx.x.new_tensor(range(ctx.x.shape[1])).float().expand(ctx.batch, -1), ctx))


def order_of(result):
    return [entry["committed"] for entry in result.trajectory]


CONFIG = DecodeConfig(gen_length=4, steps=4, record_trajectory=True)


def test_clean_run_follows_the_policy_and_counts_no_fallback():
    out = generate(poisoned_denoiser(), [[50]], LeftToRight(SamplerConfig()), CONFIG)[0]
    assert order_of(out) == [[0], [1], [2], [3]]
    assert out.fallbacks == 0


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_unusable_prediction_falls_back_to_confidence_order_for_that_step(poison):
    # second forward (step 1): the prediction at canvas position 2 (generation slot 1) is poisoned.
    den = poisoned_denoiser(poison_call=2, poison_pos=2, poison=poison)
    out = generate(den, [[50]], LeftToRight(SamplerConfig()), CONFIG)[0]
    # step 1 uses confidence order among slots 1..3 with slot 1 discarded: slot 2 (logit 3) beats
    # slot 3 (logit 2); the other steps follow the policy again.
    assert order_of(out) == [[0], [2], [1], [3]]
    assert out.fallbacks == 1
    assert den.tokenizer.mask_token_id not in out.tokens
    assert out.tokens[2] == 42  # slot 2 got its (finite) prediction


def test_only_the_poisoned_row_falls_back_and_the_other_row_is_unchanged():
    prompts = [[50, 51], [60, 61]]
    den = poisoned_denoiser(poison_call=1, poison_pos=None, poison="nan", poison_marker=50,
                            token_at={2: 40, 3: 41, 4: 42, 5: 43}, strength_at={2: 1.0, 3: 4.0, 4: 3.0, 5: 2.0})
    both = generate(den, prompts, build_sampler("entropy"), CONFIG, seeds=[1, 2])
    alone = generate(poisoned_denoiser(token_at={2: 40, 3: 41, 4: 42, 5: 43},
                                       strength_at={2: 1.0, 3: 4.0, 4: 3.0, 5: 2.0}),
                     [prompts[1]], build_sampler("entropy"), CONFIG, seeds=[2])[0]
    assert [r.fallbacks for r in both] == [1, 0]
    assert both[1].tokens == alone.tokens and order_of(both[1]) == order_of(alone)
    # whole row poisoned at step 0: every slot is uniform, confidence ties break to the leftmost
    assert order_of(both[0])[0] == [0]


def test_fallbacks_accumulate_over_steps_and_reach_the_adapter_records():
    from lm_eval.api.instance import Instance

    from boe_eval.harness.lm_adapter import BoeLM

    class AlwaysNaN(PoisonedModel):
        def forward(self, **kwargs):
            out = super().forward(**kwargs)
            out.logits[:, :, :] = float("nan")
            return out

    den = poisoned_denoiser()
    den.model.__class__ = AlwaysNaN
    lm = BoeLM(denoiser=den, sampler="margin", gen_length=6, steps=3, progress=False)
    req = Instance("generate_until", {}, ("ab", {"until": [], "max_gen_toks": 6}), 0)
    req.task_name, req.doc_id = "t", 0
    lm.generate_until([req])
    record = lm.records[("t", 0)]
    assert record["fallbacks"] == 3 and record["nfe"] == 3


def test_confidence_fallback_replaces_only_rows_with_nonfinite_eligible_scores(tiny_bert):
    den = tiny_bert
    prompts = [den.tokenizer(t, add_special_tokens=False).input_ids for t in ("ab", "cd")]
    seen = {}

    class Probe(Sampler):
        name = "probe"

        def select(self, ctx):
            scores = torch.arange(ctx.x.shape[1], dtype=torch.float32).expand(ctx.batch, -1).clone()
            first = int(ctx.eligible[0].nonzero()[0])
            scores[0, first] = float("nan")  # eligible slot of row 0
            scores[1, 0] = float("inf")  # prompt slot of row 1: not eligible, ignored
            fixed, fallbacks = confidence_fallback(scores, ctx)
            seen.setdefault("step0", (fixed, fallbacks, ctx.confidence.clone(), scores))
            from boe_eval.decoding import StepDecision

            return StepDecision(commit=top_k_mask(fixed, ctx), fallbacks=fallbacks)

    # whole canvas: the probe writes into prompt columns (column 0)
    out = generate(den, prompts, Probe(SamplerConfig()), DecodeConfig(gen_length=4, steps=4, logits_window=False))
    fixed, fallbacks, confidence, scores = seen["step0"]
    assert fallbacks.tolist() == [1, 0]
    assert torch.equal(fixed[0], confidence[0])
    assert torch.equal(fixed[1], scores[1])
    assert [r.fallbacks for r in out] == [4, 0]  # row 0 falls back at each of its 4 steps
    assert all(math.isfinite(v) for v in fixed[0].tolist())
