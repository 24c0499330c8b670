"""Loading a shipped oracle directory (`oracle:<name>`) into its denoiser class."""

from __future__ import annotations

import json
from pathlib import Path

from boe_eval.errors import ConfigError
from boe_eval.oracles import hmm, sudoku4
from boe_eval.oracles.base import OracleDenoiser


def load_oracle(path: str | Path, dtype=None, device: str = "cpu") -> OracleDenoiser:
    """Loader registered as LOADERS['boe_oracle']: always float64, whatever `dtype` asks."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    tensors = load_file(str(path / "model.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    name = f"oracle:{path.name}"
    kinds = {"hmm": hmm.HMMOracle, "sudoku4": sudoku4.Sudoku4Oracle}
    if config.get("oracle") not in kinds:
        raise ConfigError(f"oracle={config.get('oracle')!r} in {path / 'config.json'} is unknown: choose one of {', '.join(kinds)}")
    oracle = kinds[config["oracle"]].from_tensors(tensors, tokenizer, config["symbols"], name)
    oracle.model.to(device)
    return oracle


__all__ = ["load_oracle"]
