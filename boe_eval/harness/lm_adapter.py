"""lm-eval custom model `boe`: generation with any registered sampler through the one decoding loop.

    boe-lm-eval --model boe --model_args pretrained=<dir>,sampler=margin,steps=64 --tasks sudoku \
        --include_path tasks --limit 8

`--model_args` keys: the decoding settings below; every other key is a parameter of the chosen
sampler (validated against its config dataclass). Per-request compute (NFE, forwards, backwards,
wall time) is kept in `records`, keyed by (task name, doc id), for the result rows.

Data parallel: launched N times by accelerate (`accelerate launch --multi_gpu --num_processes N
-m boe_eval.harness.lm_eval_cli ...`, see `boe_eval.harness.distributed`), the model reports
accelerate's rank and world size, so lm-eval's evaluator shards the requests; each request's seed
depends only on (seed, task, doc id), so the generations equal a one-process run; `records` are
gathered on rank 0.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import sys
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from boe_eval.decoding.loop import DecodeConfig, cut_at_stop, generate_batched, generation_text
from boe_eval.decoding.schedule import ConfigError
from boe_eval.harness.distributed import data_parallel
from boe_eval.harness.schema import check_sampler_params
from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import load_denoiser
from boe_eval.samplers.base import Sampler, build_sampler

_FALSE = {"false", "0", "no", "off"}


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() not in _FALSE


def _coerce(value: Any) -> Any:
    """lm-eval passes model_args as strings (or already-parsed scalars); read literals."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    if text.lower() in {"none", "null"}:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def resolve_device(device: str | None) -> str:
    """lm-eval's CLI passes `device=cuda:0` by default, asked for or not: use the GPU when there is one, else
    the CPU (said at INFO level only: on a CPU machine that fallback is the expected case, not a problem)."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).info("device=%r: CUDA is not available, running on the CPU", device)
        return "cpu"
    return str(device)


def request_seed(seed: int, task: str | None, doc_id: int | None, index: int) -> int:
    """Per-request RNG seed: depends on the run seed and the request's identity only, never on
    batch composition, order or process rank."""
    key = f"{task}:{doc_id if doc_id is not None else index}"
    digest = 0
    for ch in key:
        digest = (digest * 131 + ord(ch)) % (2**31 - 1)
    return (int(seed) * 1_000_003 + digest) % (2**63 - 1)


@register_model("boe")
class BoeLM(LM):
    """Masked-diffusion generation for lm-eval's `generate_until` requests."""

    def __init__(
        self,
        pretrained: str | None = None,
        sampler: str | Sampler = "confidence",
        gen_length: int | None = None,
        steps: int | None = None,
        block_length: int | None = None,
        temperature: float = 0.0,
        batch_size: int | str = 1,
        seed: int = 1234,
        early_stop: bool = False,
        record_trajectory: bool = False,
        add_special_tokens: bool = True,
        dtype: str = "float32",
        device: str | None = None,
        denoiser: Denoiser | None = None,
        progress: bool = True,
        max_batch_size: int | None = None,  # accepted for lm-eval compatibility; unused
        **sampler_params: Any,
    ) -> None:
        super().__init__()
        #: data parallel under `accelerate launch` (lm-eval's evaluator shards requests by rank)
        self.data_parallel = data_parallel()
        self._rank, self._world_size = self.data_parallel.rank, self.data_parallel.world_size
        if denoiser is None:
            if not pretrained:
                raise ConfigError("pretrained is missing: pass --model_args pretrained=<local model directory>")
            placed = self.data_parallel.place(resolve_device(device))
            denoiser = load_denoiser(str(pretrained), dtype=dtype, device=placed)
        self.denoiser = denoiser
        self._device = denoiser.device
        if isinstance(sampler, Sampler):
            self.sampler = sampler
        else:
            params = {k: _coerce(v) for k, v in sampler_params.items()}
            check_sampler_params(str(sampler), params, prefix="model_args")
            self.sampler = build_sampler(str(sampler), **params)
        self.gen_length = None if gen_length is None else int(_coerce(gen_length))
        self.steps = None if steps is None else int(_coerce(steps))
        self.block_length = None if block_length is None else int(_coerce(block_length))
        self.temperature = float(_coerce(temperature))
        if self.temperature < 0:
            raise ConfigError(f"temperature={self.temperature} is invalid: it must be >= 0 (0 = greedy)")
        bs = _coerce(batch_size)
        if isinstance(bs, str) and bs.startswith("auto"):
            bs = 8
        self.batch_size = int(bs)
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size={self.batch_size} is invalid: it must be a positive integer")
        self.seed = int(_coerce(seed))
        self.early_stop = _as_bool(early_stop)
        self.record_trajectory = _as_bool(record_trajectory)
        self.add_special_tokens = _as_bool(add_special_tokens)
        self.progress = _as_bool(progress)
        #: (task, doc_id) -> per-request generation record (text, compute, trajectory)
        self.records: dict[tuple[str | None, int | None], dict] = {}

    # ------------------------------------------------------------------ lm-eval interface
    @property
    def tokenizer(self):
        return self.denoiser.tokenizer

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "boe")).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        # a prefilled assistant turn (lm-eval's gen_prefix, e.g. d1's "<reasoning>") is continued,
        # not closed, exactly as lm-eval's HF backend does
        return self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    # ------------------------------------------------------------------ data parallel
    def all_gather(self, tensor):
        return self.data_parallel.all_gather(tensor)

    def gather_object(self, obj, dst: int = 0):
        return self.data_parallel.gather_object(obj, dst=dst)

    def barrier(self) -> None:
        self.data_parallel.barrier()

    def _gather_records(self) -> None:
        """Collective: every rank's per-request records are merged into rank 0's `records`."""
        gathered = self.data_parallel.gather_object(self.records)
        if self.data_parallel.enabled and gathered is not None:
            for part in gathered:
                self.records.update(part)

    def loglikelihood(self, requests):
        raise NotImplementedError(
            "the boe model implements generate_until only: loglikelihood (Monte-Carlo ELBO) is not available yet"
        )

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError("the boe model implements generate_until only")

    def decode_config(self, gen_kwargs: dict) -> DecodeConfig:
        """Canvas length: `gen_length` if set, else the task's `max_gen_toks`; steps default to one
        token per step; block defaults to the whole generation (pure diffusion)."""
        until = gen_kwargs.get("until") or []
        if isinstance(until, str):
            until = [until]
        gen_length = self.gen_length or int(gen_kwargs.get("max_gen_toks") or 256)
        return DecodeConfig(
            gen_length=gen_length,
            steps=self.steps or gen_length,
            block_length=self.block_length or gen_length,
            temperature=self.temperature,
            until=tuple(until),
            early_stop=self.early_stop,
            record_trajectory=self.record_trajectory,
        )

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        if self.data_parallel.enabled:
            print(f"[boe-eval] rank {self.rank} of {self.world_size}: {len(requests)} requests",
                  file=sys.stderr, flush=True)
        outputs: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        configs: dict[str, DecodeConfig] = {}
        for i, req in enumerate(requests):
            gen_kwargs = dict(req.args[1]) if len(req.args) > 1 else {}
            config = self.decode_config(gen_kwargs)
            key = repr(dataclasses.astuple(config)) + repr(gen_kwargs.get("max_gen_toks"))
            configs[key] = config
            groups.setdefault(key, []).append(i)
        for key, idx in groups.items():
            config = configs[key]
            max_toks = requests[idx[0]].args[1].get("max_gen_toks") if len(requests[idx[0]].args) > 1 else None
            prompts = [self._encode(requests[i].args[0]) for i in idx]
            seeds = [
                request_seed(self.seed, getattr(requests[i], "task_name", None), getattr(requests[i], "doc_id", None), i)
                for i in idx
            ]
            results = generate_batched(
                self.denoiser,
                prompts,
                self.sampler,
                config,
                seeds,
                batch_size=self.batch_size,
                progress=self.progress and not disable_tqdm and self.data_parallel.is_main,
                desc=f"{self.sampler.name}",
            )
            for i, res in zip(idx, results):
                text = res.text
                if max_toks is not None and int(max_toks) < config.gen_length:
                    # the canvas is longer than the task allows: keep at most max_gen_toks tokens
                    raw = generation_text(self.denoiser, res.tokens, config.stop_on_eos, int(max_toks))
                    text = cut_at_stop(raw, config.until)
                outputs[i] = text
                req = requests[i]
                self.records[(getattr(req, "task_name", None), getattr(req, "doc_id", None))] = {
                    "prompt_tokens": len(prompts[idx.index(i)]),
                    "generation": text,
                    "gen_length": config.gen_length,
                    "steps": config.steps,
                    "block_length": config.block_length,
                    "stopped_early": res.stopped_early,
                    **res.compute(),
                    **({"trajectory": res.trajectory} if res.trajectory is not None else {}),
                }
                if hasattr(self, "cache_hook"):
                    self.cache_hook.add_partial("generate_until", req.args, text)
        self._gather_records()
        return outputs  # type: ignore[return-value]

    def _encode(self, context: str) -> list[int]:
        ids = self.tokenizer(context, add_special_tokens=self.add_special_tokens).input_ids
        # a trailing EOS from the tokenizer would end the generation before it starts
        eos = self.denoiser.eos_id
        while self.add_special_tokens and ids and eos is not None and ids[-1] == eos and len(ids) > 1:
            ids = ids[:-1]
        return list(ids)


__all__ = ["BoeLM", "request_seed"]
