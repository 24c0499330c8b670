"""Constraint oracle: the uniform distribution over the 288 valid 4x4 Sudoku grids (digits 1-4; each row,
column and 2x2 box a permutation). Under evidence factors e_j (see `boe_eval.oracles.base`),

    p(x_j = v | e) = sum_{s valid, s_j = v} prod_k e_k(s_k) / sum_{s valid} prod_k e_k(s_k),

which for one-hot inputs is the exact fraction of the solutions consistent with the visible cells.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from boe_eval.oracles.base import OracleDenoiser

SIZE = 4
CELLS = SIZE * SIZE
DIGITS = "1234"


def is_valid_grid(grid: list[int] | tuple[int, ...]) -> bool:
    """Every row, column and 2x2 box of the 16 cells (values 0-3) holds each value once."""
    groups = [[r * 4 + c for c in range(4)] for r in range(4)] + [[r * 4 + c for r in range(4)] for c in range(4)]
    groups += [[(br + r) * 4 + bc + c for r in range(2) for c in range(2)] for br in (0, 2) for bc in (0, 2)]
    return all(sorted(grid[i] for i in g) == [0, 1, 2, 3] for g in groups)


def all_solutions() -> Tensor:
    """Every valid grid [288, 16] (values 0-3), by brute force over rows that are permutations."""
    rows = list(itertools.permutations(range(4)))
    grids = [sum(choice, ()) for choice in itertools.product(rows, repeat=4)]
    return torch.tensor([g for g in grids if is_valid_grid(g)], dtype=torch.long)


class Sudoku4Oracle(OracleDenoiser):
    """Exact denoiser of the uniform distribution over valid 4x4 Sudoku grids."""

    def __init__(self, solutions: Tensor, tokenizer, symbols: str, name: str) -> None:
        super().__init__(tokenizer, symbols, name)
        self.solutions = solutions.long()
        self.one_hot = torch.nn.functional.one_hot(self.solutions, SIZE).to(torch.float64)  # [N, 16, 4]

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], tokenizer, symbols: str, name: str) -> Sudoku4Oracle:
        return cls(tensors["solutions"], tokenizer, symbols, name)

    def _weights(self, evidence: Tensor) -> Tensor:
        """prod_k e_k(s_k) for every solution s [b, N]."""
        sol = self.solutions.to(evidence.device)
        return evidence[:, torch.arange(CELLS, device=evidence.device)[None, :], sol].prod(-1)

    def posterior(self, evidence: Tensor) -> Tensor:
        if evidence.shape[1] != CELLS:
            return torch.full_like(evidence, 1.0 / SIZE)
        weights = self._weights(evidence)
        unnorm = torch.einsum("bs,sjv->bjv", weights, self.one_hot.to(evidence.device))
        return unnorm / weights.sum(-1)[:, None, None].clamp_min(1e-300)

    def log_evidence(self, evidence: Tensor) -> Tensor:
        total = self._weights(evidence).sum(-1) / len(self.solutions)
        return torch.log(total)


__all__ = ["CELLS", "DIGITS", "Sudoku4Oracle", "all_solutions", "is_valid_grid"]
