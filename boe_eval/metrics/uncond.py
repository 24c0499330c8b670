"""Quality of unconditional samples, as ReMDM's public evaluation computes it (kuleshov-group/remdm `main.py`
`generate_samples` / `sample_eval` and `diffusion.py` `compute_generative_perplexity`; docs/protocols.md
"Unconditional generation"):

- unigram entropy of one sample: sum over its distinct tokens of -p log p, p = count / length (nats;
  `torch.special.entr` of the token counts), averaged over samples;
- generative perplexity: each sample's text retokenized by the AR scorer's tokenizer (truncated to the scorer's
  context), the scorer's next-token NLL at positions 1..n-1 counted over non-EOS targets plus the first EOS,
  pooled over all samples: GenPPL = exp(sum NLL / sum counted tokens) (torchmetrics' Perplexity);
- MAUVE (Pillutla et al. 2021, the `mauve-text` package) between the samples and as many reference texts, on
  features of a featurizer model: the last layer's hidden state at the last token of each text (truncated to
  1024 tokens), the package's defaults otherwise (buckets = n / 10, scaling 5, seed 25).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from boe_eval.errors import ConfigError

#: ReMDM's `max_text_length` for MAUVE and its scorer context (GPT-2)
MAX_TEXT_TOKENS = 1024


def unigram_entropy(token_ids: Sequence[int]) -> float:
    """sum_v -p_v log p_v over the sample's own token frequencies p_v (nats; 0 for an empty sample)."""
    if len(token_ids) == 0:
        return 0.0
    counts = torch.unique(torch.as_tensor(list(token_ids)), return_counts=True)[1].double()
    return float(torch.special.entr(counts / counts.sum()).sum())


def _check_dir(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"{what} {str(path)!r} is not a local Hugging Face model directory (no config.json)")
    return path


@dataclass
class ARScorer:
    """A causal LM scoring texts (GenPPL): `AutoModelForCausalLM` + its tokenizer from a local directory, or
    given directly (the tests' random GPT-2)."""

    model: torch.nn.Module
    tokenizer: object
    max_length: int = MAX_TEXT_TOKENS

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", max_length: int = MAX_TEXT_TOKENS) -> ARScorer:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = _check_dir(path, "GenPPL scorer")
        model = AutoModelForCausalLM.from_pretrained(str(path)).to(device).eval()
        return cls(model, AutoTokenizer.from_pretrained(str(path)), max_length)

    def tokens(self, text: str) -> list[int]:
        """The text as the scorer reads it (ReMDM `eval_retokenize`: truncated to `max_length`)."""
        return self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]

    @torch.no_grad()
    def nll(self, text: str) -> tuple[float, int]:
        """(summed NLL, counted targets) of one sample: targets 1..n-1 of each context-sized chunk that are not
        EOS, plus the first EOS (ReMDM `compute_generative_perplexity` at batch size 1)."""
        ids = torch.tensor([self.tokens(text)], device=next(self.model.parameters()).device)
        context = int(getattr(self.model.config, "n_positions", self.max_length) or self.max_length)
        eos = self.tokenizer.eos_token_id
        total, count = 0.0, 0
        for chunk in torch.split(ids, context, dim=-1):
            if chunk.shape[1] < 2:
                continue
            logits = self.model(chunk, attention_mask=torch.ones_like(chunk)).logits.double()
            nlls = F.cross_entropy(logits[0, :-1], chunk[0, 1:], reduction="none")
            first_eos = (chunk[0] == eos).cumsum(-1) == 1
            counted = (first_eos | (chunk[0] != eos))[1:]
            total += float(nlls[counted].sum())
            count += int(counted.sum())
        return total, count


def generative_perplexity(per_sample: Sequence[tuple[float, int]]) -> float:
    """exp(sum NLL / sum counted tokens) over all samples (nan when nothing was counted)."""
    total = sum(n for n, _ in per_sample)
    count = sum(c for _, c in per_sample)
    return math.exp(total / count) if count else float("nan")


@dataclass
class Featurizer:
    """MAUVE's featurizer: an `AutoModel` (GPT-2 family) and its tokenizer; a text's feature is the last hidden
    state at its last token (mauve-text `featurize_tokens_from_model`, batch size 1)."""

    model: torch.nn.Module
    tokenizer: object
    max_length: int = MAX_TEXT_TOKENS

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", max_length: int = MAX_TEXT_TOKENS) -> Featurizer:
        from transformers import AutoModel, AutoTokenizer

        path = _check_dir(path, "MAUVE featurizer")
        return cls(AutoModel.from_pretrained(str(path)).to(device).eval(), AutoTokenizer.from_pretrained(str(path)),
                   max_length)

    @torch.no_grad()
    def features(self, texts: Sequence[str]) -> np.ndarray:
        device = next(self.model.parameters()).device
        out = []
        for text in texts:
            ids = self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"] or [self.tokenizer.eos_token_id]
            ids = torch.tensor([ids], device=device)
            hidden = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states[-1]
            out.append(hidden[0, -1].float().cpu())
        return torch.stack(out).numpy()


def mauve_score(sample_features: np.ndarray, reference_features: np.ndarray, seed: int = 25) -> float:
    """MAUVE(P = references, Q = samples) by `mauve.compute_mauve` on precomputed features (package defaults)."""
    import mauve

    if len(sample_features) < 2 or len(reference_features) < 2:
        return float("nan")
    result = mauve.compute_mauve(p_features=reference_features, q_features=sample_features, device_id=-1,
                                 verbose=False, seed=seed)
    return float(result.mauve)


__all__ = ["ARScorer", "Featurizer", "MAX_TEXT_TOKENS", "generative_perplexity", "mauve_score", "unigram_entropy"]
