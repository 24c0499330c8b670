#!/usr/bin/env python
"""Build the unconditional-generation CPU ground (tasks/uncond_grammar; TABES Table 4 in small):

    python scripts/train_tiny_grammar.py --steps 2300 --schedule-steps 3000   # the shipped models (see the card)
    python scripts/train_tiny_grammar.py --steps 5 --out /tmp/x     # smoke test

writes tasks/uncond_grammar/data/reference.jsonl (the held-out documents MAUVE compares against),
boe_eval/tiny/checkpoints/tiny_grammar (the MDM, best validation loss) and its ar_scorer/ folder (the tiny GPT-2
trained on the corpus: GenPPL scorer and MAUVE featurizer). Deterministic on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from boe_eval.tiny.grammar import documents  # noqa: E402
from boe_eval.tiny.grammar_models import DOC_WORDS, TEST_SEED, train_gpt2, train_mdm  # noqa: E402

REFERENCE = REPO / "tasks" / "uncond_grammar" / "data" / "reference.jsonl"
REFERENCE_SIZE = 1000


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help="MDM optimiser steps (default: MDM_CONFIG's)")
    parser.add_argument("--schedule-steps", type=int,
                        help="length of the MDM's cosine schedule (default: --steps); stop early inside a longer one")
    parser.add_argument("--scorer-steps", type=int, default=300, help="AR scorer optimiser steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "boe_eval" / "tiny" / "checkpoints" / "tiny_grammar")
    args = parser.parse_args(argv)
    reference = documents(REFERENCE_SIZE, DOC_WORDS, TEST_SEED)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    with REFERENCE.open("w") as fh:
        for i, doc in enumerate(reference):
            fh.write(json.dumps({"id": i, "text": doc}) + "\n")
    hardware = f"{platform.machine()} CPU, {args.threads} torch thread(s)"
    command = " ".join(["python", "scripts/train_tiny_grammar.py", *argv])
    best = train_mdm(args.out, args.steps, args.threads, reference, args.schedule_steps)
    scorer = train_gpt2(args.out / "ar_scorer", args.scorer_steps, threads=args.threads, reference=reference)
    (args.out / "training.json").write_text(json.dumps({**best, "command": command, "hardware": hardware}, indent=2) + "\n")
    (args.out / "ar_scorer" / "training.json").write_text(
        json.dumps({**scorer, "command": command, "hardware": hardware}, indent=2) + "\n")
    print(json.dumps({"mdm_val_loss": best["val_loss"], "mdm_step": best["step"], "scorer_loss": scorer["final_loss"]}))


if __name__ == "__main__":
    main()
