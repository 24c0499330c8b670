"""PC-Sampler (Huang et al., arXiv 2508.13021; docs/references.md §4): position-aware calibrated confidence.

Score of a masked slot i of the current block (NEUIR/PC-Sampler `src/generate.py::pc_sampler_function`):

    s_i = exp(-lambda * j_i) * min(alpha, -p_i(x0_i) * log(f_bg(x0_i) + 1e-9))

with j_i the index of i relative to the start of the current block (0-based) and f_bg the background
frequency of the proposed token in a reference corpus (the reference code's sign: the score is >= 0).
The step commits the top-`budget` slots by s_i, like the greedy samplers.

f_bg is a property of the tokenizer. It comes from, in this order: `frequency_file` (a JSON file);
else `token_frequencies.json` in the tokenizer's directory (what `scripts/build_token_frequencies.py`
writes by default); else, only when `uniform_prior=true` is set, the uniform prior f_bg = 1/|V| (the
score is then the capped confidence p * log|V| times the position prior). Without any of them the
first step stops with a one-line error saying how to get frequencies.

Accepted frequency files (token ids are the model's vocabulary ids, as JSON object keys):
- `{"num_tokens": N, "frequencies": {"id": f, ...}}` (written by the script); unlisted ids get 1/N;
- PC-Sampler's own `{"num_token": N, "p_baseline_dict": {"id": count, ...}}`
  (`data/baseline/reference_corpus_llada.json`): f = count / N, unlisted ids get 1/N as there;
- a flat `{"id": f, ...}`; unlisted ids get 0 (the 1e-9 of the formula then bounds the log).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from boe_eval.errors import ConfigError
from boe_eval.decoding.state import StepContext, StepDecision
from boe_eval.samplers.cost import ONE_FORWARD
from boe_eval.samplers.base import Sampler, SamplerConfig, register_sampler, top_k_mask

#: file name of a tokenizer's background frequencies, looked up beside the tokenizer
FREQUENCY_FILE_NAME = "token_frequencies.json"
#: the epsilon inside the log of the reference code
LOG_EPSILON = 1e-9


@dataclass
class BackgroundFrequencies:
    """f_bg(v) for the listed token ids, and the frequency of every unlisted id."""

    frequencies: dict[int, float]
    unseen: float
    source: str

    def as_tensor(self, vocab_size: int, device: torch.device) -> Tensor:
        """f_bg as a [vocab_size] float64 vector (ids beyond the file get `unseen`)."""
        largest = max(self.frequencies, default=-1)
        if largest >= vocab_size:
            raise ConfigError(
                f"frequency file {self.source} lists token id {largest} but the model's vocabulary has "
                f"{vocab_size} ids: it was built for another tokenizer"
            )
        table = torch.full((vocab_size,), self.unseen, dtype=torch.float64)
        if self.frequencies:
            ids = torch.tensor(list(self.frequencies), dtype=torch.long)
            table[ids] = torch.tensor(list(self.frequencies.values()), dtype=torch.float64)
        return table.to(device)


def _token_map(raw: object, source: str) -> dict[int, float]:
    if not isinstance(raw, dict):
        raise ConfigError(f"frequency file {source} is invalid: the token map must be a JSON object id -> frequency")
    table: dict[int, float] = {}
    for key, value in raw.items():
        try:
            token, number = int(key), float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"frequency file {source} has the entry {key!r}: {value!r}: keys must be token ids and values numbers"
            ) from None
        if token < 0 or not math.isfinite(number) or number < 0:
            raise ConfigError(
                f"frequency file {source} has the entry {key!r}: {value!r}: ids must be >= 0 and frequencies >= 0"
            )
        table[token] = number
    return table


def load_background_frequencies(path: str | Path) -> BackgroundFrequencies:
    """Read a frequency file in one of the formats listed in the module docstring."""
    source = str(path)
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"frequency file {source} does not exist: build one with scripts/build_token_frequencies.py"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"frequency file {source} cannot be read: {err}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"frequency file {source} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if isinstance(raw, dict) and "frequencies" in raw:
        total = raw.get("num_tokens")
        if not isinstance(total, (int, float)) or total <= 0:
            raise ConfigError(f"frequency file {source} has num_tokens={total!r}: it must be a positive number")
        return BackgroundFrequencies(_token_map(raw["frequencies"], source), 1.0 / total, source)
    if isinstance(raw, dict) and "p_baseline_dict" in raw:
        total = raw.get("num_token")
        if not isinstance(total, (int, float)) or total <= 0:
            raise ConfigError(f"frequency file {source} has num_token={total!r}: it must be a positive number")
        counts = _token_map(raw["p_baseline_dict"], source)
        return BackgroundFrequencies({t: c / total for t, c in counts.items()}, 1.0 / total, source)
    return BackgroundFrequencies(_token_map(raw, source), 0.0, source)


@dataclass
class PcSamplerConfig(SamplerConfig):
    #: lambda of the position prior exp(-lambda * j) (reference default 0.25; README: 0 for Sudoku)
    position_decay: float = 0.25
    #: alpha, the cap of the calibrated salience (reference default 10)
    salience_cap: float = 10.0
    #: JSON file of background token frequencies; null = token_frequencies.json beside the tokenizer
    frequency_file: str | None = None
    #: use f_bg = 1/|V| instead of corpus frequencies (must be asked for explicitly)
    uniform_prior: bool = False

    def validate(self) -> None:
        if not math.isfinite(self.position_decay) or self.position_decay < 0:
            raise ConfigError(f"position_decay={self.position_decay!r} is invalid: it must be a finite number >= 0")
        if not math.isfinite(self.salience_cap) or self.salience_cap <= 0:
            raise ConfigError(f"salience_cap={self.salience_cap!r} is invalid: it must be a finite number > 0")
        if self.uniform_prior and self.frequency_file:
            raise ConfigError(
                f"frequency_file={self.frequency_file!r} and uniform_prior=true contradict each other: choose one"
            )
        if self.frequency_file:
            load_background_frequencies(self.frequency_file)  # a missing or malformed file fails before any model loads


def missing_frequencies_error(tokenizer_dir: str) -> ConfigError:
    return ConfigError(
        f"pc_sampler has no background token frequencies for the tokenizer in {tokenizer_dir!r}: run "
        f"scripts/build_token_frequencies.py --model <model dir> --corpus <text files> (writes {FREQUENCY_FILE_NAME} "
        "beside the tokenizer), or set sampler.params.frequency_file=<json>, or sampler.params.uniform_prior=true"
    )


def position_prior(ctx: StepContext, decay: float) -> Tensor:
    """exp(-lambda * j), j = position - start of the current block, for every slot [b, L] (float64)."""
    positions = torch.arange(ctx.x.shape[1], device=ctx.x.device)
    offset = (positions[None, :] - ctx.block_start[:, None]).clamp(min=0)
    return torch.exp(-decay * offset.double())


def calibrated_salience(confidence: Tensor, background: Tensor, cap: float) -> Tensor:
    """min(alpha, -p(x0) * log(f_bg(x0) + 1e-9)), the reference's calibrated confidence."""
    return torch.clamp(-confidence.double() * torch.log(background + LOG_EPSILON), max=cap)


@register_sampler("pc_sampler", PcSamplerConfig)
class PcSampler(Sampler):
    """s_i = exp(-lambda j_i) * min(alpha, -p_i(x0_i) log f_bg(x0_i)), top-budget in the block."""

    knob = ONE_FORWARD

    config: PcSamplerConfig

    def __init__(self, config: PcSamplerConfig | None = None) -> None:
        super().__init__(config)
        self._frequencies: BackgroundFrequencies | None = None
        if self.config.frequency_file:
            self._frequencies = load_background_frequencies(self.config.frequency_file)
        self._table: Tensor | None = None

    def _background(self, ctx: StepContext) -> Tensor:
        vocab_size = int(ctx.logits.shape[-1])
        if self._table is not None and self._table.shape[0] == vocab_size and self._table.device == ctx.logits.device:
            return self._table
        if self.config.uniform_prior:
            table = torch.full((vocab_size,), 1.0 / vocab_size, dtype=torch.float64, device=ctx.logits.device)
        else:
            if self._frequencies is None:
                tokenizer_dir = str(getattr(ctx.model.tokenizer, "name_or_path", "") or "")
                candidate = Path(tokenizer_dir) / FREQUENCY_FILE_NAME
                if not tokenizer_dir or not candidate.is_file():
                    raise missing_frequencies_error(tokenizer_dir)
                self._frequencies = load_background_frequencies(candidate)
            table = self._frequencies.as_tensor(vocab_size, ctx.logits.device)
        self._table = table
        return table

    def select(self, ctx: StepContext) -> StepDecision:
        background = self._background(ctx)[ctx.x0]
        scores = position_prior(ctx, self.config.position_decay) * calibrated_salience(
            ctx.confidence, background, self.config.salience_cap
        )
        return StepDecision(commit=top_k_mask(scores, ctx))
