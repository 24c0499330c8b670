"""Monte-Carlo ELBO log-likelihoods (boe_eval.decoding.elbo) and the adapter's loglikelihood requests.

The estimator's mean is checked against the exact ELBO by brute force: every mask subset of an
11-token continuation under the built-in tiny_addition model, weighted by the stratified
distribution of the mask count (restated here with exact fractions)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from fixtures.models import dream, dream_dir, llada, llada_dir, mdlm, mdlm_dir  # noqa: F401  (pytest fixtures)

from boe_eval.decoding import DecodeConfig, generate_batched
from boe_eval.decoding.elbo import ELBOConfig, draw_masks, elbo_loglikelihoods, stratified_mask_counts
from boe_eval.errors import ConfigError
from boe_eval.harness.likelihood import encode_pair, fit_context, rolling_windows
from boe_eval.samplers import build_sampler

DOC = {"a": "7862140500", "b": "2137854497", "answer": "09999994997"}
WRONG = "09999994987"  # one digit off


@pytest.fixture(scope="module")
def addition():
    from boe_eval.models import load_denoiser

    return load_denoiser("builtin:tiny_addition")


def ids(denoiser, text: str) -> list[int]:
    return denoiser.tokenizer(text, add_special_tokens=False).input_ids


def count_weights(target_len: int, batch: int) -> dict[int, Fraction]:
    """P(a row's mask count = l), averaged over the rows of a round: k ~ U{1..T}, row j masks
    ((k - 1 + round_half_up(j T / b)) mod T) + 1 tokens (exact fractions)."""
    weights = {l: Fraction(0) for l in range(1, target_len + 1)}
    for k in range(1, target_len + 1):
        for j in range(batch):
            offset = math.floor(Fraction(j * target_len, batch) + Fraction(1, 2))
            weights[(k - 1 + offset) % target_len + 1] += Fraction(1, target_len * batch)
    return weights


@torch.no_grad()
def subset_log_likelihoods(denoiser, context: list[int], continuation: list[int]) -> dict[tuple[int, ...], float]:
    """sum_{i in S} log p(x_i | context, x with S masked) for every non-empty subset S of the continuation."""
    T = len(continuation)
    seq = torch.tensor(context + continuation)
    subsets = [s for l in range(1, T + 1) for s in itertools.combinations(range(T), l)]
    out = {}
    for start in range(0, len(subsets), 256):
        part = subsets[start : start + 256]
        x = seq.repeat(len(part), 1)
        for row, subset in enumerate(part):
            x[row, [len(context) + i for i in subset]] = denoiser.mask_id
        logp = denoiser.logits(x).double().log_softmax(-1)
        for row, subset in enumerate(part):
            out[subset] = sum(float(logp[row, len(context) + i, continuation[i]]) for i in subset)
    return out


def exact_elbo(
    terms: dict[tuple[int, ...], float], T: int, weights: dict[int, Fraction], reweight: bool = True
) -> float:
    """sum_l w(l) * mean over |S| = l of (T / l) * sum_{i in S} log p(x_i | x with S masked)
    (without the T / l factor when `reweight` is False)."""
    return sum(
        float(weights[len(s)]) / math.comb(T, len(s)) * (T / len(s) if reweight else 1.0) * value
        for s, value in terms.items()
    )


def test_stratified_counts_are_uniform_per_row_and_evenly_spaced():
    for T, b in [(3, 2), (11, 8), (5, 5), (4, 32), (12, 5)]:
        for j in range(b):
            # every row's count is a bijection of k: uniform on 1..T
            assert sorted(stratified_mask_counts(k, T, b)[j] for k in range(1, T + 1)) == list(range(1, T + 1))
    # b = T: one round masks every count 1..T once
    assert sorted(stratified_mask_counts(4, 7, 7)) == list(range(1, 8))
    assert stratified_mask_counts(1, 8, 4) == [1, 3, 5, 7]
    # LLaDA's float round-half-to-even would give row 1 of (T = 3, b = 2) counts {2, 1, 1}: here {3, 1, 2}
    assert [stratified_mask_counts(k, 3, 2)[1] for k in (1, 2, 3)] == [3, 1, 2]
    assert count_weights(3, 2) == {1: Fraction(1, 3), 2: Fraction(1, 3), 3: Fraction(1, 3)}


def test_draw_masks_match_counts():
    masks, counts = draw_masks(6, 12, 4, torch.Generator().manual_seed(3))
    assert masks.shape == (3, 4, 6) and counts.shape == (3, 4)
    assert torch.equal(masks.sum(-1), counts)
    for r in range(3):
        assert sorted(counts[r].tolist()) == sorted(stratified_mask_counts(int(counts[r, 0]), 6, 4))


def test_single_token_continuation_is_exact(addition):
    """T = 1: every sample masks the one token, so the estimate is log p(x | context) exactly."""
    context = ids(addition, "7862140500+2137854497=0999999499")
    target = ids(addition, "7")
    result = elbo_loglikelihoods(addition, [(context, target)], [0], ELBOConfig(mc_num=8, mc_batch_size=4))[0]
    x = torch.tensor([context + [addition.mask_id]])
    expected = float(addition.logits(x).detach().double().log_softmax(-1)[0, -1, target[0]])
    assert result.logprob == pytest.approx(expected, abs=1e-5)
    assert result.stderr == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("answer", [DOC["answer"], WRONG])
def test_estimate_matches_brute_force_elbo(addition, answer):
    """Mean of 512 samples (64 rounds of 8) within 4 standard errors of the exact ELBO."""
    context, continuation = ids(addition, f"{DOC['a']}+{DOC['b']}="), ids(addition, answer)
    b = 8
    T = len(continuation)
    terms = subset_log_likelihoods(addition, context, continuation)
    exact = exact_elbo(terms, T, count_weights(T, b))
    result = elbo_loglikelihoods(
        addition, [(context, continuation)], [2024], ELBOConfig(mc_num=512, mc_batch_size=b, max_rows=64)
    )[0]
    print(f"{answer}: estimate {result.logprob:.4f} +- {result.stderr:.4f} (SE), exact ELBO {exact:.4f}")
    assert abs(result.logprob - exact) < 4 * result.stderr
    # the check has power: the bound without the T / l weight is many standard errors away, and for
    # the right answer so is drawing subsets (instead of mask counts) uniformly
    unweighted = exact_elbo(terms, T, count_weights(T, b), reweight=False)
    per_subset = exact_elbo(terms, T, {l: Fraction(math.comb(T, l), 2**T - 1) for l in range(1, T + 1)})
    print(f"  alternatives: no T/l weight {unweighted:.4f}, uniform subsets {per_subset:.4f}")
    assert abs(unweighted - exact) > 5 * result.stderr
    if answer == DOC["answer"]:
        assert abs(per_subset - exact) > 5 * result.stderr
    assert result.compute["nfe"] == 512 and result.compute["forwards"] == 512


def test_same_seed_same_value_across_batching_and_order(addition):
    texts = [("1234567890+0987654321=", "02222222211"), ("5+5=", "10"), ("", "0123"), ("99+01=", "100")]
    pairs = [(ids(addition, c), ids(addition, t)) for c, t in texts]
    seeds = [11, 12, 13, 14]
    one = elbo_loglikelihoods(addition, pairs, seeds, ELBOConfig(mc_num=16, mc_batch_size=4, max_rows=4))
    packed = elbo_loglikelihoods(addition, pairs, seeds, ELBOConfig(mc_num=16, mc_batch_size=4, max_rows=64))
    reverse = elbo_loglikelihoods(addition, pairs[::-1], seeds[::-1],
                                  ELBOConfig(mc_num=16, mc_batch_size=4, max_rows=8))
    for a, b, c in zip(one, packed, reverse[::-1]):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4) and a.logprob == pytest.approx(c.logprob, abs=1e-4)
        assert a.compute["nfe"] == b.compute["nfe"] == c.compute["nfe"] == 16
    other_seed = elbo_loglikelihoods(addition, pairs[:1], [99], ELBOConfig(mc_num=16, mc_batch_size=4))
    assert other_seed[0].logprob != pytest.approx(one[0].logprob, abs=1e-4)


def test_greedy_check_equals_one_token_per_step_confidence_decoding(addition):
    """LLaDA's greedy check is the decoding loop's confidence order writing one token per step."""
    prompts = ["7862140500+2137854497=", "1111111111+2222222222=", "9999999999+0000000001="]
    decoded = generate_batched(addition, [ids(addition, p) for p in prompts], build_sampler("confidence"),
                               DecodeConfig(gen_length=11, steps=11, temperature=0.0), [0, 0, 0], progress=False)
    texts = [addition.tokenizer.decode(r.tokens) for r in decoded]
    pairs = [(ids(addition, p), ids(addition, t)) for p, t in zip(prompts, texts)]
    pairs += [(ids(addition, prompts[0]), ids(addition, WRONG))]
    results = elbo_loglikelihoods(addition, pairs, [1, 2, 3, 4],
                                  ELBOConfig(mc_num=4, mc_batch_size=4, check_greedy=True))
    assert [r.is_greedy for r in results] == [True, True, True, False]
    assert all(r.compute["nfe"] == 4 + 11 for r in results)
    unchecked = elbo_loglikelihoods(addition, pairs[:1], [1], ELBOConfig(mc_num=4, mc_batch_size=4))
    assert unchecked[0].is_greedy is False


def test_pair_encoding_windows_and_truncation(addition):
    tok = addition.tokenizer
    context, continuation = encode_pair(tok, lambda s: ids(addition, s), "Q: 1+1 ", "2")
    assert tok.decode(context) == "Q: 1+1" and tok.decode(continuation) == " 2"
    assert fit_context([1, 2, 3, 4], [5, 6], 5) == [2, 3, 4]
    assert fit_context([1, 2], [5, 6], None) == [1, 2]
    with pytest.raises(ValueError, match="continuation of 3 tokens"):
        fit_context([1], [5, 6, 7], 2)
    windows = rolling_windows(list(range(10)), [99], 5)
    assert windows == [([99], [0, 1, 2, 3]), ([99], [4, 5, 6, 7]), ([99], [8, 9])]
    assert rolling_windows(list(range(10)), [], None) == [([], list(range(10)))]


def test_bad_mc_settings_fail_before_loading():
    from boe_eval.harness.lm_adapter import BoeLM

    with pytest.raises(ConfigError, match="mc_num=40 is invalid: it must be a multiple of mc_batch_size=32"):
        BoeLM(pretrained="/nonexistent/model", mc_num=40)
    with pytest.raises(ConfigError, match="mc_batch_size=0 is invalid"):
        BoeLM(pretrained="/nonexistent/model", mc_num="8", mc_batch_size="0")


def test_adapter_loglikelihood_deterministic_and_recorded(addition):
    from lm_eval.api.instance import Instance

    from boe_eval.harness.lm_adapter import BoeLM

    def requests():
        out = []
        for doc_id, (a, b) in enumerate([("12", "34"), ("50", "50")]):
            total = str(int(a) + int(b)).zfill(3)
            for idx, choice in enumerate([total, "999"]):
                out.append(Instance("loglikelihood", {}, (f"{a}+{b}=", choice), idx, ("toy_sum", doc_id, 1)))
        return out

    small = BoeLM(denoiser=addition, mc_num=16, mc_batch_size=4, batch_size=1, seed=5, progress=False)
    big = BoeLM(denoiser=addition, mc_num=16, mc_batch_size=4, batch_size=64, seed=5, progress=False)
    a = small.loglikelihood(requests())
    b = big.loglikelihood(requests()[::-1])[::-1]
    assert [x[0] for x in a] == pytest.approx([x[0] for x in b], abs=1e-4)
    assert all(isinstance(v, float) and g is False for v, g in a)
    record = small.records[("toy_sum", 0)]
    assert record["nfe"] == 32 and len(record["likelihood_requests"]) == 2
    assert record["likelihood_requests"][0]["nfe"] == 16
    # rolling on a text that fits the window is the ELBO of the whole text with an empty context
    rolling = small.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("12+34=046",), 0, ("roll", 0, 1))])
    plain = small.loglikelihood([Instance("loglikelihood", {}, ("", "12+34=046"), 0, ("roll", 0, 1))])
    assert rolling[0] == pytest.approx(plain[0][0], abs=1e-9)


@pytest.mark.slow
def test_multiple_choice_task_end_to_end(addition, tmp_path):
    """tiny_addition_choice through lm-eval: the built-in model picks the right sum far above chance
    (1/4), and every example row gets its ELBO compute."""
    import importlib.util

    import lm_eval
    from lm_eval.tasks import TaskManager

    from boe_eval.harness.lm_adapter import BoeLM

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("make_choice", root / "scripts" / "make_tiny_addition_choice.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    assert maker.write(tmp_path / "test.jsonl") == 50
    vendored = root / "tasks" / "tiny_addition_choice" / "data" / "test.jsonl"
    assert (tmp_path / "test.jsonl").read_bytes() == vendored.read_bytes()

    lm = BoeLM(denoiser=addition, mc_num=32, mc_batch_size=8, batch_size=256, seed=3, progress=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=["tiny_addition_choice"],
                                  task_manager=TaskManager(include_path=str(root / "tasks")),
                                  limit=12, bootstrap_iters=0)
    acc = out["results"]["tiny_addition_choice"]["acc,none"]
    print(f"tiny_addition_choice acc on 12 items at mc_num=32: {acc:.3f}")
    assert acc >= 0.75
    for doc_id in range(12):
        record = lm.records[("tiny_addition_choice", doc_id)]
        assert len(record["likelihood_requests"]) == 4 and record["nfe"] == 4 * 32


@pytest.mark.parametrize("family", ["llada", "dream", "mdlm"])
def test_every_family_exact_for_one_token_and_independent_of_packing(family, request):
    """LLaDA ignores the padding mask (only equal lengths share a forward), Dream's logits are
    shifted back inside the denoiser, MDLM gets t = l / T: a one-token continuation is still
    log p(x | context) exactly, and packing requests into one forward changes nothing."""
    model = request.getfixturevalue(family)
    vocab = min(model.vocab_size, 50)
    gen = torch.Generator().manual_seed(0)
    draw = lambda n: torch.randint(5, vocab, (n,), generator=gen).tolist()  # noqa: E731
    pairs = [(draw(n), draw(t)) for n, t in [(5, 1), (3, 4), (6, 3), (2, 2), (4, 3), (1, 3)]]
    pairs = [([c for c in ctx if c != model.mask_id], [c for c in cont if c != model.mask_id]) for ctx, cont in pairs]
    seeds = [1, 2, 3, 4, 5, 6]
    alone = elbo_loglikelihoods(model, pairs, seeds, ELBOConfig(mc_num=8, mc_batch_size=4, max_rows=4))
    packed = elbo_loglikelihoods(model, pairs, seeds, ELBOConfig(mc_num=8, mc_batch_size=4, max_rows=64))
    for a, b in zip(alone, packed):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
    context, target = pairs[0]
    x = torch.tensor([context + [model.mask_id]], device=model.device)
    timestep = torch.ones(1, device=model.device) if model.time_conditioned else None
    with torch.no_grad():
        logits = model.logits(x, attention_mask=torch.ones_like(x), timestep=timestep)
    expected = float(logits.double().log_softmax(-1)[0, -1, target[0]])
    assert alone[0].logprob == pytest.approx(expected, abs=1e-4)
