"""Character-level tokenizer for the project's own small MDMs (a `PreTrainedTokenizerFast`, so it
saves and loads with `save_pretrained` / `AutoTokenizer.from_pretrained` like any HF tokenizer)."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[MASK]", "[EOS]", "[UNK]")
#: printable ASCII: enough for the built-in tasks' prompts and answers
DEFAULT_ALPHABET = "".join(chr(c) for c in range(32, 127)) + "\n"


def build_char_tokenizer(alphabet: Iterable[str] = DEFAULT_ALPHABET) -> PreTrainedTokenizerFast:
    """One token per character; ids 0-3 are [PAD], [MASK], [EOS], [UNK]."""
    chars = sorted(set(alphabet))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        mask_token="[MASK]",
        eos_token="[EOS]",
        unk_token="[UNK]",
        clean_up_tokenization_spaces=False,
    )
