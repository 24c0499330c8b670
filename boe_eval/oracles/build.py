"""Write the shipped oracle directories (boe_eval/oracles/checkpoints/<name>) and their task data
(tasks/oracle_<name>/data/test.jsonl), all from fixed seeds:

    python -m boe_eval.oracles.build          # rewrites both, byte-identical on every run
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from boe_eval.oracles import ORACLE_DIR, hmm, sudoku4
from boe_eval.oracles.base import FREE, write_oracle_dir

REPO = Path(__file__).resolve().parents[2]
HMM_SYMBOLS = "abcdefghij"

#: name -> (kind, symbols, parameter builder, task data builder settings)
ORACLES = {
    "hmm_random": {"kind": "hmm", "symbols": HMM_SYMBOLS, "seed": 0, "gen_length": 128, "reveal": 0.10, "items": 200},
    "hmm_two_modes": {"kind": "hmm", "symbols": "abcd", "seed": 1, "gen_length": 64, "reveal": 0.08, "items": 200},
    "sudoku4": {"kind": "sudoku4", "symbols": sudoku4.DIGITS, "seed": 2, "gen_length": 16, "givens": (4, 6), "items": 200},
}


def parameters(name: str) -> dict[str, torch.Tensor]:
    if name == "hmm_random":
        return hmm.random_hmm(seed=ORACLES[name]["seed"])
    if name == "hmm_two_modes":
        return hmm.two_modes_hmm()
    return {"solutions": sudoku4.all_solutions()}


def task_items(name: str) -> list[dict]:
    """Test items: a template (prompt) and the sequence it was revealed from (a draw from the oracle's p)."""
    from boe_eval.oracles.load import load_oracle

    spec = ORACLES[name]
    rng = np.random.default_rng(1000 + spec["seed"])
    oracle = load_oracle(ORACLE_DIR / name)
    items = []
    for _ in range(spec["items"]):
        if spec["kind"] == "hmm":
            sequence = oracle.sample(spec["gen_length"], rng)
            template = hmm.reveal(sequence, spec["reveal"], rng)
        else:
            grid = oracle.solutions[rng.integers(len(oracle.solutions))].tolist()
            sequence = "".join(sudoku4.DIGITS[v] for v in grid)
            givens = rng.choice(sudoku4.CELLS, size=int(rng.integers(*spec["givens"], endpoint=True)), replace=False)
            template = "".join(ch if i in set(givens.tolist()) else FREE for i, ch in enumerate(sequence))
        items.append({"template": template, "sample": sequence})
    return items


def write_frequencies(name: str) -> None:
    """token_frequencies.json for PC-Sampler: the oracle's exact prior symbol frequencies (mean over positions of
    p(x_t = s), no evidence), in the format of scripts/build_token_frequencies.py (num_tokens is nominal)."""
    from boe_eval.oracles.load import load_oracle

    oracle = load_oracle(ORACLE_DIR / name)
    n = ORACLES[name]["gen_length"]
    with torch.no_grad():
        marginals = oracle.posterior(torch.ones(1, n, len(oracle.symbols), dtype=torch.float64))[0].mean(0)
    payload = {
        "tokenizer": f"oracle:{name}",
        "corpus": [f"exact prior marginals of the oracle over {n} positions (no sampling)"],
        "num_tokens": 1_000_000,
        "frequencies": {str(i): round(float(p), 12) for i, p in zip(oracle.symbol_ids, marginals)},
    }
    (ORACLE_DIR / name / "token_frequencies.json").write_text(json.dumps(payload, indent=1) + "\n")


def main() -> None:
    for name, spec in ORACLES.items():
        write_oracle_dir(ORACLE_DIR / name, spec["kind"], spec["symbols"], parameters(name),
                         {"gen_length": spec["gen_length"]})
        write_frequencies(name)
        data = REPO / "tasks" / f"oracle_{name}" / "data" / "test.jsonl"
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("".join(json.dumps(item) + "\n" for item in task_items(name)))
        print(f"wrote {ORACLE_DIR / name} and {data}")


if __name__ == "__main__":
    main()
