"""The lm-eval task functions of an unconditional-generation task (`tasks/uncond_grammar`, `tasks/owt_uncond`;
TABES Table 4, docs/protocols.md "Unconditional generation").

One document per sample: its text is the reference MAUVE compares against (as many references as samples, as
ReMDM asserts), the prompt is empty. Per sample `process_results` reports the unigram entropy and the AR scorer's
NLL per token (`gen_nll`, the primary per-sample score), and hands the corpus-level aggregations what they need:
`gen_ppl` pools (NLL, count) over samples, `mauve` featurizes all samples and their references. Where the corpus
has an exact likelihood (the grammar), `oracle_nll` (per word) and `oracle_gen_ppl` are reported beside them.

The scorer and the featurizer are local directories: the environment variables `BOE_UNCOND_SCORER` and
`BOE_UNCOND_FEATURIZER` (default: the scorer) override a task's defaults; `BOE_UNCOND_REFERENCE` names the
reference corpus (.jsonl with a `text` field, or .txt with one document per line).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets

from boe_eval.errors import ConfigError
from boe_eval.harness.task_data import read_records
from boe_eval.metrics.uncond import ARScorer, Featurizer, generative_perplexity, mauve_score, unigram_entropy

SCORER_VARIABLE, FEATURIZER_VARIABLE, REFERENCE_VARIABLE = "BOE_UNCOND_SCORER", "BOE_UNCOND_FEATURIZER", "BOE_UNCOND_REFERENCE"


def read_reference(path: str | Path) -> list[str]:
    """Documents of a reference corpus: .jsonl / .json / .jsonl.gz records with a `text` field, or a .txt file with
    one document per non-empty line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"reference corpus {str(path)!r} is not a file: give a .jsonl (field text) or .txt path "
                          f"in ${REFERENCE_VARIABLE}")
    if path.suffix == ".txt":
        return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = read_records(path)
    if not records or "text" not in records[0]:
        raise ConfigError(f"reference corpus {str(path)!r} has no `text` field in its records")
    return [str(r["text"]) for r in records]


def _setting(variable: str, default: str | Path | None, what: str) -> str:
    value = os.environ.get(variable) or (str(default) if default else None)
    if not value:
        raise ConfigError(f"{what} is not set: export {variable}=<local path>")
    return value


class UncondTask:
    """`load`, `doc_to_text`, `process_results` and the corpus aggregations of one unconditional task."""

    def __init__(self, reference: str | Path | None, scorer: str | Path | None, featurizer: str | Path | None = None,
                 oracle_log_likelihood: Callable[[list[str]], float] | None = None) -> None:
        self.default_reference, self.default_scorer = reference, scorer
        self.default_featurizer = featurizer
        self.oracle_log_likelihood = oracle_log_likelihood

    @functools.cached_property
    def scorer(self) -> ARScorer:
        return ARScorer.load(_setting(SCORER_VARIABLE, self.default_scorer, "the GenPPL scorer (an AR model directory)"))

    @functools.cached_property
    def featurizer(self) -> Featurizer:
        default = self.default_featurizer or os.environ.get(SCORER_VARIABLE) or self.default_scorer
        return Featurizer.load(_setting(FEATURIZER_VARIABLE, default, "the MAUVE featurizer (a model directory)"))

    def load(self, **kwargs) -> datasets.DatasetDict:
        texts = read_reference(_setting(REFERENCE_VARIABLE, self.default_reference, "the reference corpus"))
        return datasets.DatasetDict({"test": datasets.Dataset.from_list([{"id": i, "text": t} for i, t in enumerate(texts)])})

    @staticmethod
    def doc_to_text(doc: dict) -> str:
        return ""  # unconditional: the whole canvas is generated

    def process_results(self, doc: dict, results: Sequence[str]) -> dict:
        text = results[0]
        nll, count = self.scorer.nll(text)
        out = {
            "entropy": unigram_entropy(self.scorer.tokens(text)),
            "gen_nll": nll / count if count else float("nan"),
            "gen_ppl": (nll, count),
            "mauve": (text, doc["text"]),
        }
        if self.oracle_log_likelihood is not None:
            words = text.split()
            log_p = self.oracle_log_likelihood(words) if words else float("-inf")
            out["oracle_nll"] = -log_p / max(1, len(words))
            out["oracle_gen_ppl"] = (-log_p, len(words))
        return out

    # ------------------------------------------------------------------ corpus-level aggregations (lm-eval)
    @staticmethod
    def gen_ppl(items: Sequence[tuple[float, int]]) -> float:
        return generative_perplexity([tuple(i) for i in items])

    def mauve(self, items: Sequence[tuple[str, str]]) -> float:
        samples, references = [i[0] for i in items], [i[1] for i in items]
        featurizer = self.featurizer
        return mauve_score(featurizer.features(samples), featurizer.features(references))

    @staticmethod
    def oracle_gen_ppl(items: Sequence[tuple[float, int]]) -> float:
        total, count = sum(i[0] for i in items), sum(i[1] for i in items)
        return math.exp(total / count) if count and math.isfinite(total) else float("inf")


__all__ = ["UncondTask", "read_reference"]
