#!/usr/bin/env python
"""Build the background token frequencies f_bg of PC-Sampler (docs/references.md §4) for one tokenizer.

Tokenizes a local text corpus with the model's tokenizer (no special tokens added) and writes
`{"tokenizer": ..., "corpus": [...], "num_tokens": N, "frequencies": {"<id>": count / N, ...}}`.
By default the file is `token_frequencies.json` in the model directory, where `pc_sampler` finds it
without further configuration; `--output` writes it elsewhere (then pass
`sampler.params.frequency_file=<path>`).

    python scripts/build_token_frequencies.py --model /models/LLaDA-8B-Instruct --corpus wiki.txt code.jsonl
    python scripts/build_token_frequencies.py --model builtin:tiny_sudoku --corpus puzzles.txt --output f.json

Corpus files: `.jsonl` files contribute the string field `--text-field` (default "text") of each
line, any other file its lines of text. PC-Sampler's own LLaDA file counts 1.68e9 tokens; a larger
corpus gives better estimates of rare tokens (unlisted ids get frequency 1/N).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

FREQUENCY_FILE_NAME = "token_frequencies.json"  # the name pc_sampler looks for beside the tokenizer


def corpus_texts(paths: Sequence[Path], text_field: str) -> Iterator[str]:
    """Each text of the corpus: a line of a text file, or `text_field` of a JSON-lines record."""
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if path.suffix == ".jsonl":
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    text = record.get(text_field) if isinstance(record, dict) else None
                    if not isinstance(text, str):
                        raise SystemExit(f"{path}:{number} has no string field {text_field!r}: set --text-field")
                    yield text
                else:
                    yield line


def count_tokens(tokenizer, texts: Iterator[str], batch_size: int = 1024) -> Counter:
    """Token id -> count over all texts (tokenized in batches, no special tokens)."""
    counts: Counter = Counter()
    batch: list[str] = []
    for text in tqdm(texts, desc="tokenizing", unit=" texts"):
        batch.append(text)
        if len(batch) == batch_size:
            for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                counts.update(ids)
            batch = []
    if batch:
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            counts.update(ids)
    return counts


def frequency_table(counts: Counter, tokenizer_name: str, corpus: Sequence[str]) -> dict:
    total = sum(counts.values())
    if total == 0:
        raise SystemExit("the corpus has no tokens: give non-empty text files")
    return {
        "tokenizer": tokenizer_name,
        "corpus": list(corpus),
        "num_tokens": total,
        "frequencies": {str(token): counts[token] / total for token in sorted(counts)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model directory (or builtin:<name>) whose tokenizer is used")
    parser.add_argument("--corpus", required=True, nargs="+", type=Path, help="text or .jsonl files")
    parser.add_argument("--output", type=Path, help=f"output JSON (default: <model dir>/{FREQUENCY_FILE_NAME})")
    parser.add_argument("--text-field", default="text", help="field of .jsonl records holding the text")
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from boe_eval.errors import ConfigError
    from boe_eval.models.loading import resolve_model_path

    try:
        model_dir = resolve_model_path(args.model)
    except ConfigError as err:
        raise SystemExit(str(err)) from None
    missing = [str(p) for p in args.corpus if not p.is_file()]
    if missing:
        raise SystemExit(f"corpus file {missing[0]!r} does not exist: give local text or .jsonl files")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=True)
    counts = count_tokens(tokenizer, corpus_texts(args.corpus, args.text_field))
    table = frequency_table(counts, str(args.model), [str(p) for p in args.corpus])
    output = args.output or model_dir / FREQUENCY_FILE_NAME
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_suffix(output.suffix + ".tmp")
    temporary.write_text(json.dumps(table))
    temporary.replace(output)
    print(f"{output}: {len(counts)} distinct ids, {table['num_tokens']} tokens", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
