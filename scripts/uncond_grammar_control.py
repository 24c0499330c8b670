#!/usr/bin/env python
"""The direction check of the unconditional CPU ground (TABES Table 4 in small): MAUVE, GenPPL, oracle GenPPL and
entropy of 100 samples of the shipped text MDM, of the same architecture at random initialisation, and of 100
held-out references (the data itself), all under the task's scorer and featurizer. Output: a Markdown table.

    python scripts/uncond_grammar_control.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import math, numpy as np, torch
torch.set_num_threads(1)
from transformers import BertForMaskedLM
from boe_eval.decoding import DecodeConfig, generate
from boe_eval.samplers import build_sampler
from boe_eval.metrics.uncond import ARScorer, Featurizer, generative_perplexity, mauve_score, unigram_entropy
from boe_eval.metrics.uncond_task import read_reference
from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import BUILTIN_DIR, load_denoiser
from boe_eval.tiny.grammar import WordHMM
n = 100
trained = load_denoiser("builtin:tiny_grammar")
torch.manual_seed(0)
rnd = Denoiser(BertForMaskedLM(trained.model.config).eval(), trained.tokenizer, mask_id=trained.mask_id,
               forbidden_ids=trained.forbidden_ids, time_conditioned=True, name="random")
refs = read_reference(Path(__file__).resolve().parents[1] / "tasks" / "uncond_grammar" / "data" / "reference.jsonl")[:n]
scorer = ARScorer.load(BUILTIN_DIR / "tiny_grammar" / "ar_scorer"); feat = Featurizer.load(BUILTIN_DIR / "tiny_grammar" / "ar_scorer")
hmm = WordHMM(); rf = feat.features(refs)
def row(name, texts):
    words = sum(len(t.split()) for t in texts)
    oracle = math.exp(-sum(hmm.log_likelihood(t.split()) for t in texts) / words)
    print(f"| {name} | {mauve_score(feat.features(texts), rf):.3f} | {generative_perplexity([scorer.nll(t) for t in texts]):.2f} | {oracle:.2f} | {np.mean([unigram_entropy(scorer.tokens(t)) for t in texts]):.2f} |")
print("| samples | MAUVE | GenPPL | oracle GenPPL | entropy |\n|---|---|---|---|---|")
row("held-out references 100-199 (the data itself)", read_reference(Path(__file__).resolve().parents[1] / "tasks" / "uncond_grammar" / "data" / "reference.jsonl")[n:2 * n])
for name, model in (("tiny_grammar (trained)", trained), ("same architecture, random init", rnd)):
    res = generate(model, [[]] * n, build_sampler("remdm_cap", eta=0.0), DecodeConfig(gen_length=64, steps=64), seeds=list(range(n)))
    row(name + ", MDLM 64 steps", [r.text for r in res])
