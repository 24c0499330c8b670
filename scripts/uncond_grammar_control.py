#!/usr/bin/env python
"""The direction check of the unconditional CPU ground (TABES Table 4 in small): MAUVE, GenPPL, oracle GenPPL and
entropy of 100 samples of the shipped text MDM, of the same architecture at random initialisation, and of 100
held-out references (the data itself), all under the task's scorer and featurizer. Output: a Markdown table.

    python scripts/uncond_grammar_control.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import math  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import BertForMaskedLM  # noqa: E402

from boe_eval.decoding import DecodeConfig, generate  # noqa: E402
from boe_eval.metrics.uncond import ARScorer, Featurizer, generative_perplexity, mauve_score, unigram_entropy  # noqa: E402
from boe_eval.metrics.uncond_task import read_reference  # noqa: E402
from boe_eval.models.denoiser import Denoiser  # noqa: E402
from boe_eval.models.loading import BUILTIN_DIR, load_denoiser  # noqa: E402
from boe_eval.samplers import build_sampler  # noqa: E402
from boe_eval.tiny.grammar import WordHMM  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[1] / "tasks" / "uncond_grammar" / "data" / "reference.jsonl"
SCORER = BUILTIN_DIR / "tiny_grammar" / "ar_scorer"


def main(n: int = 100) -> None:
    torch.set_num_threads(1)
    trained = load_denoiser("builtin:tiny_grammar")
    torch.manual_seed(0)
    random_mdm = Denoiser(BertForMaskedLM(trained.model.config).eval(), trained.tokenizer, mask_id=trained.mask_id,
                          forbidden_ids=trained.forbidden_ids, time_conditioned=True, name="random")
    references = read_reference(REFERENCE)
    scorer, featurizer, hmm = ARScorer.load(SCORER), Featurizer.load(SCORER), WordHMM()
    reference_features = featurizer.features(references[:n])

    def row(name: str, texts: list[str]) -> None:
        words = sum(len(t.split()) for t in texts)
        oracle = math.exp(-sum(hmm.log_likelihood(t.split()) for t in texts) / words)
        mauve = mauve_score(featurizer.features(texts), reference_features)
        ppl = generative_perplexity([scorer.nll(t) for t in texts])
        entropy = np.mean([unigram_entropy(scorer.tokens(t)) for t in texts])
        print(f"| {name} | {mauve:.3f} | {ppl:.2f} | {oracle:.2f} | {entropy:.2f} |")

    print("| samples | MAUVE | GenPPL | oracle GenPPL | entropy |\n|---|---|---|---|---|")
    row("held-out references 100-199 (the data itself)", references[n:2 * n])
    for name, model in (("tiny_grammar (trained)", trained), ("same architecture, random init", random_mdm)):
        results = generate(model, [[]] * n, build_sampler("remdm_cap", eta=0.0), DecodeConfig(gen_length=64, steps=64),
                           seeds=list(range(n)))
        row(name + ", MDLM 64 steps", [r.text for r in results])


if __name__ == "__main__":
    main()
