#!/usr/bin/env python
"""Write a random-initialised BertForMaskedLM + the project's character tokenizer to a directory.

For smoke runs of the long-prompt tasks (d1 Sudoku/Countdown, GSM8K, MATH500, code) where the
built-in models' 64-position tables are too short: every command runs, the scores are those of a
random model.

    python scripts/make_random_model.py /tmp/random_bert --positions 4096
    boe-eval sampler=entropy task=countdown model.path=/tmp/random_bert limit=4
"""

from __future__ import annotations

import argparse

import torch
from transformers import BertConfig, BertForMaskedLM

from boe_eval.tiny.tokenizer import build_char_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="directory to write")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--positions", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tokenizer = build_char_tokenizer()
    torch.manual_seed(args.seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=2, intermediate_size=2 * args.hidden,
                        max_position_embeddings=args.positions, pad_token_id=tokenizer.pad_token_id)
    BertForMaskedLM(config).save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"random model written to {args.out}")


if __name__ == "__main__":
    main()
