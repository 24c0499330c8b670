"""Unconditional generation (TABES Table 4; docs/protocols.md "Unconditional generation"): the grammar corpus and
its exact likelihood, the metrics restated from ReMDM's evaluation (entropy, GenPPL, MAUVE) against hand-computed
and brute-force values, the task end to end through lm-eval, and the direction of the numbers (the trained text MDM
scores better than a random one)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from boe_eval.metrics.uncond import ARScorer, generative_perplexity, mauve_score, unigram_entropy
from boe_eval.tiny.grammar import WordHMM, build_word_tokenizer, documents, vocabulary
from boe_eval.tiny.grammar_models import build_gpt2

REFERENCE = Path(__file__).resolve().parents[1] / "tasks" / "uncond_grammar" / "data" / "reference.jsonl"


@pytest.fixture(scope="module")
def random_gpt2_dir(tmp_path_factory):
    """A tiny random GPT-2 over the grammar's words, built locally (the tests' scorer and featurizer)."""
    model, tokenizer = build_gpt2(seed=3)
    path = tmp_path_factory.mktemp("random_gpt2")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- the corpus
def test_corpus_is_deterministic_and_in_vocabulary():
    first, second = documents(5, 64, 11), documents(5, 64, 11)
    assert first == second and documents(5, 64, 12) != first
    words = set(vocabulary())
    assert all(len(d.split()) == 64 and set(d.split()) <= words for d in first)
    tokenizer = build_word_tokenizer()
    ids = tokenizer(first[0])["input_ids"]
    assert len(ids) == 64 and tokenizer.decode(ids) == first[0] and tokenizer.unk_token_id not in ids


def test_exact_likelihood_equals_brute_force_over_state_paths():
    hmm = WordHMM()
    words = ["the", "cat", "sleeps"]
    idx = [hmm.index[w] for w in words]
    k = len(hmm.states)
    total = 0.0
    for path in itertools.product(range(k), repeat=len(words)):
        p = hmm.start[path[0]] * hmm.emit[path[0], idx[0]]
        for t in range(1, len(words)):
            p *= hmm.trans[path[t - 1], path[t]] * hmm.emit[path[t], idx[t]]
        total += p
    assert hmm.log_likelihood(words) == pytest.approx(math.log(total), rel=1e-10)
    assert hmm.log_likelihood(["the", "zebra"]) == float("-inf")
    # grammatical text is far more likely than the same words shuffled
    doc = documents(1, 64, 0)[0].split()
    shuffled = list(np.random.default_rng(0).permutation(doc))
    assert hmm.log_likelihood(doc) > hmm.log_likelihood(shuffled) + 20


# ----------------------------------------------------------------------------- the metrics
def test_unigram_entropy_by_hand():
    # counts 2, 1, 1 of 4: -(1/2 log 1/2 + 2 * 1/4 log 1/4) = 1.5 log 2
    assert unigram_entropy([7, 7, 3, 5]) == pytest.approx(1.5 * math.log(2))
    assert unigram_entropy([4, 4, 4]) == 0.0 and unigram_entropy([]) == 0.0


def test_generative_perplexity_pools_tokens_not_samples():
    assert generative_perplexity([(2.0, 1), (6.0, 3)]) == pytest.approx(math.exp(8 / 4))
    assert math.isnan(generative_perplexity([(0.0, 0)]))


def test_scorer_nll_equals_brute_force(random_gpt2_dir):
    """Targets 1..n-1 scored, EOS targets dropped except the first (ReMDM compute_generative_perplexity)."""
    scorer = ARScorer.load(random_gpt2_dir)
    tokenizer, model = scorer.tokenizer, scorer.model
    text = "the cat sleeps . [EOS] a dog [EOS] runs"
    ids = tokenizer(text)["input_ids"]
    eos = tokenizer.eos_token_id
    assert ids.count(eos) == 2
    with torch.no_grad():
        log_probs = F.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    first_eos = ids.index(eos)
    counted = [j for j in range(1, len(ids)) if ids[j] != eos or j == first_eos]
    expected = -sum(float(log_probs[j - 1, ids[j]]) for j in counted)
    nll, count = scorer.nll(text)
    assert count == len(ids) - 2 and nll == pytest.approx(expected, rel=1e-9)


def test_mauve_separates_distributions():
    rng = np.random.default_rng(0)
    same_a, same_b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    far = rng.normal(size=(200, 8)) + 5.0
    assert mauve_score(same_a, same_b) > 0.9
    assert mauve_score(far, same_b) < 0.1


# ----------------------------------------------------------------------------- end to end
def test_uncond_grammar_through_lm_eval_reports_mauve_genppl_entropy(random_gpt2_dir, monkeypatch):
    """The task through the harness (lm-eval, the decoding loop, the corpus aggregations): every Table 4 metric
    lands in the summary row, finite."""
    from boe_eval.harness.evaluate import CellSpec, evaluate_cell
    from boe_eval.models.loading import load_denoiser
    from boe_eval.samplers import build_sampler

    monkeypatch.setenv("BOE_UNCOND_SCORER", str(random_gpt2_dir))
    spec = CellSpec(model_name="tiny_grammar", model_path="builtin:tiny_grammar", sampler="fb", sampler_params={},
                    task="uncond_grammar", lm_eval_task="uncond_grammar", primary_metric="oracle_nll",
                    gen_length=64, steps=8, block_length=64, temperature=1.0, limit=24, batch_size=24,
                    include_paths=["tasks"])
    rows = evaluate_cell(spec, load_denoiser("builtin:tiny_grammar"), build_sampler("fb"), progress=False)
    summary = rows[-1]
    assert summary["row_type"] == "summary" and summary["n_examples"] == 24
    for metric in ("mauve", "gen_ppl", "entropy", "oracle_gen_ppl", "oracle_nll", "gen_nll"):
        value = summary[f"metric.{metric}"]
        assert value is not None and math.isfinite(value), metric
    assert 0 < summary["metric.mauve"] <= 1 and summary["metric.gen_ppl"] > 1
    # the pooled GenPPL is exp of the token-weighted mean NLL, and entropy the mean of the samples'
    examples = rows[:-1]
    assert summary["metric.entropy"] == pytest.approx(np.mean([r["metric.entropy"] for r in examples]))
    assert summary["metric.oracle_gen_ppl"] == pytest.approx(math.exp(np.mean([r["metric.oracle_nll"] for r in examples])))
    from boe_eval.analysis.tables import format_summary_table

    printed = format_summary_table([summary])
    assert all(title in printed for title in ("MAUVE", "GenPPL", "entropy", "oracle GenPPL"))


def test_committed_table4_is_rebuilt_from_its_rows():
    """results/table4_uncond_grammar/table4.md is what the Table 4 layout makes of the committed rows."""
    from boe_eval.analysis.load import load_rows
    from boe_eval.analysis.uncond_table import uncond_table

    folder = Path(__file__).resolve().parents[1] / "results" / "table4_uncond_grammar"
    table = uncond_table(load_rows(folder))
    assert table + "\n" == (folder / "table4.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == (
        ["mdlm"] * 3 + ["fb"] * 3 + ["dfm"] * 3 + ["remdm"] * 3 + ["boe"] * 3)


def _decode_texts(denoiser, sampler_name, n, steps=16):
    from boe_eval.decoding import DecodeConfig, generate
    from boe_eval.samplers import build_sampler

    results = generate(denoiser, [[]] * n, build_sampler(sampler_name), DecodeConfig(gen_length=64, steps=steps),
                       seeds=list(range(n)))
    return [r.text for r in results]


@pytest.mark.slow
def test_trained_text_mdm_beats_a_random_one():
    """The numbers move the expected way: the shipped MDM's samples have a far lower exact GenPPL and scorer
    GenPPL and a higher MAUVE than those of the same architecture at its random initialisation."""
    from transformers import BertForMaskedLM

    from boe_eval.metrics.uncond import Featurizer
    from boe_eval.models.denoiser import Denoiser
    from boe_eval.models.loading import BUILTIN_DIR, load_denoiser
    from boe_eval.metrics.uncond_task import read_reference

    trained = load_denoiser("builtin:tiny_grammar")
    torch.manual_seed(0)
    random_model = BertForMaskedLM(trained.model.config)
    random_mdm = Denoiser(random_model, trained.tokenizer, mask_id=trained.mask_id,
                          forbidden_ids=trained.forbidden_ids, time_conditioned=True, name="random")
    n = 60
    references = read_reference(REFERENCE)[:n]
    scorer = ARScorer.load(BUILTIN_DIR / "tiny_grammar" / "ar_scorer")
    featurizer = Featurizer.load(BUILTIN_DIR / "tiny_grammar" / "ar_scorer")
    hmm = WordHMM()
    reference_features = featurizer.features(references)
    scores = {}
    for name, model in (("trained", trained), ("random", random_mdm)):
        texts = _decode_texts(model, "remdm_cap", n)
        oracle = math.exp(-np.mean([hmm.log_likelihood(t.split()) / len(t.split()) for t in texts]))
        scores[name] = (oracle, generative_perplexity([scorer.nll(t) for t in texts]),
                        mauve_score(featurizer.features(texts), reference_features))
    (oracle_t, ppl_t, mauve_t), (oracle_r, ppl_r, mauve_r) = scores["trained"], scores["random"]
    assert oracle_t < oracle_r / 2 and ppl_t < ppl_r / 2 and mauve_t > mauve_r


@pytest.mark.parametrize("sweep_name, extra, steps", [
    ("table4_uncond_grammar", [], {"mdlm": [16, 32, 64], "fb": [16, 32, 64], "remdm": [16, 32, 64], "boe": [8, 16, 32]}),
    ("paper_table4", ["model.path=builtin:tiny_grammar", "model.device=cpu"],
     {"mdlm": [128, 256, 512], "fb": [128, 256, 512], "remdm": [128, 256, 512], "boe": [64, 128, 256]}),
])
def test_table4_sweeps_plan_the_rows_at_matched_nfe(tmp_path, monkeypatch, sweep_name, extra, steps):
    """Both Table 4 sweeps plan MDLM, FB, DFM, ReMDM and BoE: the schedule samplers at steps = NFE budget, BoE at
    half (a forward and a backward per step), DFM over its grid of the reference's S, placed at measured NFE.
    (owt_uncond reads its reference corpus from the environment: the grammar's stands in.)"""
    monkeypatch.setenv("BOE_UNCOND_REFERENCE", str(REFERENCE))
    from hydra import compose, initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR
    from boe_eval.harness.sweep import plan_sweep

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"sweep={sweep_name}", f"output_dir={tmp_path}", *extra])
    cells = plan_sweep(cfg)
    planned: dict[str, list[int]] = {}
    for cell in cells:
        planned.setdefault(cell.entry.label, []).append(cell.spec.steps)
    dfm = [c for c in cells if c.entry.label == "dfm"]
    assert {k: v for k, v in planned.items() if k != "dfm"} == steps
    assert len(dfm) == 3 and all(c.spec.sampler_params.get("planned_steps") for c in dfm)
    assert all(c.spec.temperature == 1.0 for c in cells)
    assert cells[0].spec.sampler_params["eta"] == 0.0 and cells[0].spec.sampler == "remdm_cap"


def test_owt_uncond_names_the_missing_path(monkeypatch):
    """owt_uncond without its local paths: one line naming the variable to set."""
    from boe_eval.errors import ConfigError
    from boe_eval.metrics.uncond_task import UncondTask

    for variable in ("BOE_UNCOND_REFERENCE", "BOE_UNCOND_SCORER", "BOE_UNCOND_FEATURIZER"):
        monkeypatch.delenv(variable, raising=False)
    task = UncondTask(None, None)
    with pytest.raises(ConfigError, match="export BOE_UNCOND_REFERENCE="):
        task.load()
    with pytest.raises(ConfigError, match="export BOE_UNCOND_SCORER="):
        task.scorer
    monkeypatch.setenv("BOE_UNCOND_REFERENCE", "/nonexistent/owt.jsonl")
    with pytest.raises(ConfigError, match="is not a file"):
        task.load()


def test_the_shipped_text_model_is_small_documented_and_says_how_it_was_trained():
    """The built-in text MDM and its scorer stay small (<= 10 MB together) and the model card names the
    training command that made them."""
    folder = Path(__file__).resolve().parents[1] / "boe_eval" / "tiny" / "checkpoints" / "tiny_grammar"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 10 * 2**20
    assert "scripts/train_tiny_grammar.py" in (folder / "README.md").read_text()
