"""A text-like corpus the project generates itself: a word-level hidden Markov "grammar" (the CPU ground of the
unconditional-generation task, Table 4 of TABES; tasks/uncond_grammar/SOURCES.md).

Hidden states are sentence roles (subject determiner, adjective, noun, transitive / intransitive verb, object, adverb,
preposition, conjunction, full stop); each emits English words with Zipf weights, so samples read like
"the old cat follows a bright river . she sleeps near the garden .". Both matrices are smoothed with eps = 1e-3
uniform mass, so every word sequence has a finite probability and the exact likelihood

    log p(x_1..x_n) = log sum_z start[z_1] emit[z_1, x_1] prod_t trans[z_{t-1}, z_t] emit[z_t, x_t]

(forward algorithm, `log_likelihood`) is a second generative perplexity beside the AR scorer's, exact and free of
any scorer. A document is a window of `n` words of the stream, started at a sentence start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: role -> words it emits (Zipf weights in this order)
ROLES: dict[str, tuple[str, ...]] = {
    "det": ("the", "a", "every", "this", "that", "some", "no"),
    "adj": ("small", "old", "red", "quiet", "bright", "green", "happy", "dark", "cold", "tall"),
    "noun": ("cat", "dog", "teacher", "child", "bird", "river", "city", "garden", "stone", "ship", "tree", "song"),
    "pron": ("she", "he", "it", "someone"),
    "tverb": ("sees", "likes", "finds", "follows", "builds", "hears", "carries", "remembers", "paints", "keeps"),
    "iverb": ("sleeps", "runs", "sings", "waits", "falls", "laughs", "swims"),
    "adv": ("slowly", "often", "quietly", "today", "again"),
    "prep": ("near", "under", "with", "behind", "across"),
    "conj": ("and", "but", "while"),
    "stop": (".",),
}
#: hidden state -> (role it emits, {next state: weight}); "end" is the sentence boundary
STATES: dict[str, tuple[str, dict[str, float]]] = {
    "end": ("stop", {"det1": 0.7, "pron": 0.3}),
    "det1": ("det", {"adj1": 0.3, "noun1": 0.7}),
    "adj1": ("adj", {"adj1": 0.1, "noun1": 0.9}),
    "noun1": ("noun", {"tverb": 0.6, "iverb": 0.4}),
    "pron": ("pron", {"tverb": 0.6, "iverb": 0.4}),
    "tverb": ("tverb", {"det2": 1.0}),
    "det2": ("det", {"adj2": 0.35, "noun2": 0.65}),
    "adj2": ("adj", {"noun2": 1.0}),
    "noun2": ("noun", {"end": 0.5, "prep": 0.2, "conj": 0.15, "adv": 0.15}),
    "iverb": ("iverb", {"end": 0.4, "adv": 0.3, "prep": 0.3}),
    "adv": ("adv", {"end": 0.8, "conj": 0.2}),
    "prep": ("prep", {"det3": 1.0}),
    "det3": ("det", {"noun3": 1.0}),
    "noun3": ("noun", {"end": 0.8, "conj": 0.2}),
    "conj": ("conj", {"det1": 0.6, "pron": 0.4}),
}
#: uniform mass mixed into every transition and emission row (full support)
SMOOTHING = 1e-3


def vocabulary() -> list[str]:
    """The grammar's words, in a fixed order (the tokenizers' word ids follow it)."""
    words: list[str] = []
    for role_words in ROLES.values():
        words.extend(w for w in role_words if w not in words)
    return words


class WordHMM:
    """The corpus distribution: start, transition and emission matrices (float64) over `vocabulary()`."""

    def __init__(self, smoothing: float = SMOOTHING) -> None:
        self.words = vocabulary()
        self.states = list(STATES)
        index = {w: i for i, w in enumerate(self.words)}
        k, v = len(self.states), len(self.words)
        trans, emit = np.zeros((k, k)), np.zeros((k, v))
        for i, (role, successors) in enumerate(STATES.values()):
            for name, weight in successors.items():
                trans[i, self.states.index(name)] = weight
            zipf = np.array([1.0 / (r + 1) for r in range(len(ROLES[role]))])
            for word, weight in zip(ROLES[role], zipf / zipf.sum()):
                emit[i, index[word]] = weight
        trans /= trans.sum(1, keepdims=True)
        self.trans = (1 - smoothing) * trans + smoothing / k
        self.emit = (1 - smoothing) * emit + smoothing / v
        self.start = self.trans[self.states.index("end")]  # documents start at a sentence start
        self.index = index
        self._start_cdf, self._trans_cdf, self._emit_cdf = (np.cumsum(m, -1) for m in (self.start, self.trans, self.emit))

    def sample(self, n: int, rng: np.random.Generator) -> list[str]:
        """n words of the stream, x ~ p (inverse-CDF draws: 2n uniforms from `rng`)."""
        u = rng.random((n, 2))
        state = min(int(np.searchsorted(self._start_cdf, u[0, 0], side="right")), len(self.states) - 1)
        words = []
        for t in range(n):
            if t:
                state = min(int(np.searchsorted(self._trans_cdf[state], u[t, 0], side="right")), len(self.states) - 1)
            word = min(int(np.searchsorted(self._emit_cdf[state], u[t, 1], side="right")), len(self.words) - 1)
            words.append(self.words[word])
        return words

    def log_likelihood(self, words: Sequence[str]) -> float:
        """Exact log p(words) by the scaled forward algorithm; -inf if a word is not in the vocabulary."""
        if any(w not in self.index for w in words):
            return float("-inf")
        total, alpha = 0.0, self.start
        for t, word in enumerate(words):
            if t:
                alpha = alpha @ self.trans
            alpha = alpha * self.emit[:, self.index[word]]
            scale = alpha.sum()
            total += math.log(scale)
            alpha = alpha / scale
        return total

    def entropy_rate_bound(self, n: int, samples: int = 2000, seed: int = 0) -> float:
        """Monte-Carlo estimate of the per-word NLL of n-word documents (the oracle's own GenPPL is exp of it)."""
        rng = np.random.default_rng(seed)
        return -float(np.mean([self.log_likelihood(self.sample(n, rng)) for _ in range(samples)])) / n


def build_word_tokenizer(with_mask: bool = True):
    """Word-level tokenizer over the grammar's words (a `PreTrainedTokenizerFast`; tokens joined by spaces on
    decode). With a mask token for the MDM; without one (EOS only) for the AR scorer, which must retokenize
    the MDM's decoded text like ReMDM's GPT-2 scorer does."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ("[PAD]", "[MASK]", "[EOS]", "[UNK]") if with_mask else ("[PAD]", "[EOS]", "[UNK]")
    vocab = {tok: i for i, tok in enumerate(specials)}
    for word in vocabulary():
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    kwargs = {"mask_token": "[MASK]"} if with_mask else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]",
        clean_up_tokenization_spaces=False, **kwargs,
    )


def documents(n_docs: int, n_words: int, seed: int) -> list[str]:
    """`n_docs` documents of `n_words` words each, deterministic in `seed`."""
    hmm, rng = WordHMM(), np.random.default_rng(seed)
    return [" ".join(hmm.sample(n_words, rng)) for _ in range(n_docs)]


__all__ = ["ROLES", "SMOOTHING", "STATES", "WordHMM", "build_word_tokenizer", "documents", "vocabulary"]
