"""Exact oracle denoisers (issue 14): known distributions whose conditionals are computed exactly, behind the
`Denoiser` contract (`model=oracle_<name>`, path `oracle:<name>`). See `boe_eval.oracles.base`."""

from pathlib import Path

#: shipped oracle directories: `oracle:<name>` -> boe_eval/oracles/checkpoints/<name>
ORACLE_DIR = Path(__file__).resolve().parent / "checkpoints"
