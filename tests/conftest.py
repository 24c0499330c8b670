"""Shared fixtures: tiny random-initialised models built offline, in temporary directories."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)


def make_tiny_bert(path, seed: int = 0, hidden: int = 32, layers: int = 2) -> str:
    """Save a random-initialised BertForMaskedLM + character tokenizer to `path`."""
    from transformers import BertConfig, BertForMaskedLM

    from boe_eval.tiny.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_bert(tiny_bert_dir):
    from boe_eval.models import load_denoiser

    return load_denoiser(tiny_bert_dir)


#: held-out puzzles of the built-in Sudoku task (tasks/tiny_sudoku/data/test.jsonl), for the BoE-family tests
SUDOKU_PUZZLES = ["0200310410000400", "4000000001002010", "0003001030000100"]


@pytest.fixture(scope="module")
def sudoku64():
    """The built-in trained 4x4 Sudoku MDM in float64 (a real, sharp signal; 16 answer slots)."""
    from boe_eval.models.loading import load_denoiser

    return load_denoiser("builtin:tiny_sudoku", dtype=torch.float64)


def sudoku_ids(denoiser, puzzles=SUDOKU_PUZZLES):
    """Prompt token ids of the built-in Sudoku task for `puzzles`."""
    from boe_eval.tiny.sudoku import prompt

    return [denoiser.tokenizer.encode(prompt(p), add_special_tokens=False) for p in puzzles]
