"""lm-eval custom model `boe`: generation with any registered sampler through the one decoding loop;
log-likelihood requests by LLaDA's Monte-Carlo ELBO (`boe_eval.decoding.elbo`; model_args `mc_num`,
`mc_batch_size`, `check_greedy`, `max_length`).

    boe-lm-eval --model boe --model_args pretrained=<dir>,sampler=margin,steps=64 --tasks sudoku \
        --include_path tasks --limit 8

`--model_args` keys: the decoding settings below; every other key is a parameter of the chosen
sampler (validated against its config dataclass). Per-request compute (NFE, forwards, backwards,
wall time) is kept in `records`, keyed by (task name, doc id), for the result rows; the project's
entry points (`boe-lm-eval`, `boe-eval`) copy it into lm-eval's logged samples as
`sample["compute"]` (`attach_compute`, `with_compute_in_samples`).

Data parallel: launched N times by accelerate (`accelerate launch --multi_gpu --num_processes N
-m boe_eval.harness.lm_eval_cli ...`, see `boe_eval.harness.distributed`), the model reports
accelerate's rank and world size, so lm-eval's evaluator shards the requests; each request's seed
depends only on (seed, task, doc id), so the generations equal a one-process run; `records` are
gathered on rank 0.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from boe_eval.decoding.elbo import ELBOConfig, LikelihoodResult, elbo_loglikelihoods
from boe_eval.decoding.loop import (DecodeConfig, SequenceResult, check_batch_size, check_temperature, cut_at_stop,
                                   generate_batched, generation_text)
from boe_eval.errors import ConfigError
from boe_eval.harness.distributed import data_parallel
from boe_eval.harness.likelihood import encode_pair, fit_context, rolling_windows
from boe_eval.harness.schema import check_sampler_params
from boe_eval.models.denoiser import Denoiser
from boe_eval.models.loading import load_denoiser
from boe_eval.samplers.base import Sampler, build_sampler

if TYPE_CHECKING:
    from boe_eval.harness.specs import CellSpec

_FALSE = {"false", "0", "no", "off"}
#: per-request compute summed into a document's record (MeteredDenoiser's counters)
LIKELIHOOD_COMPUTE = ("nfe", "forwards", "backwards", "forward_equivalents", "tokens_processed", "wall_time_s")


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
        cache: str = "none",
        add_special_tokens: bool = True,
        dtype: str = "float32",
        device: str | None = None,
        denoiser: Denoiser | None = None,
        progress: bool = True,
        max_batch_size: int | None = None,  # accepted for lm-eval compatibility; unused
        mc_num: int | str = 128,
        mc_batch_size: int | str | None = None,
        check_greedy: bool | str = False,
        max_length: int | str | None = None,
        **sampler_params: Any,
    ) -> None:
        super().__init__()
        # loglikelihood requests: Monte-Carlo ELBO settings (boe_eval.decoding.elbo), checked before any load
        mc = _coerce(mc_num)
        mc_batch = _coerce(mc_batch_size) if mc_batch_size is not None else None
        if mc_batch is None:  # LLaDA's default round of 32 samples
            mc_batch = min(mc, 32) if isinstance(mc, int) and not isinstance(mc, bool) else mc
        self.elbo = ELBOConfig(mc_num=mc, mc_batch_size=mc_batch, check_greedy=_as_bool(check_greedy))
        self.elbo.validate()
        self.max_length = _coerce(max_length)  # caps the likelihood window below the model's own
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length <= 0):
            raise ConfigError(f"max_length={self.max_length!r} is invalid: it must be a positive integer")
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
        check_temperature(self.temperature)  # (the loop's own rules, before any request is decoded)
        bs = _coerce(batch_size)
        if isinstance(bs, str) and bs.startswith("auto"):
            bs = 8
        self.batch_size = int(bs)
        check_batch_size(self.batch_size)
        self.elbo = dataclasses.replace(self.elbo, max_rows=self.batch_size)  # rows per ELBO forward
        self.seed = int(_coerce(seed))
        self.early_stop = _as_bool(early_stop)
        from boe_eval.models.kv_cache import check_cache_mode

        self.cache = check_cache_mode(str(cache))
        self.record_trajectory = _as_bool(record_trajectory)
        self.add_special_tokens = _as_bool(add_special_tokens)
        self.progress = _as_bool(progress)
        #: (task, doc_id) -> per-request generation record (text, compute, trajectory)
        self.records: dict[tuple[str | None, int | None], dict] = {}
        for created in _WATCHERS:
            created.append(self)

    @classmethod
    def from_spec(cls, spec: CellSpec, denoiser: Denoiser, sampler: Sampler, progress: bool = True) -> BoeLM:
        """The model lm-eval evaluates one cell of the harness with: the cell's decoding settings, taken
        from its (already validated) spec."""
        return cls(denoiser=denoiser, sampler=sampler, gen_length=spec.gen_length, steps=spec.steps,
                   block_length=spec.block_length, temperature=spec.temperature, batch_size=spec.batch_size,
                   seed=spec.seed, early_stop=spec.early_stop, record_trajectory=spec.record_trajectory,
                   cache=spec.cache, progress=progress)

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

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """(ELBO estimate of log p(continuation | context), is_greedy) per request, by LLaDA's
        Monte-Carlo estimator (`boe_eval.decoding.elbo`; model_args `mc_num`, `mc_batch_size`; rows
        per forward = `batch_size`, at least one round). Every choice of a document shares its seed
        (common random numbers across choices). `is_greedy` is LLaDA's greedy check with
        `check_greedy=true`; otherwise False: the check costs T more forwards per request and LLaDA
        recommends it off (no metric of its paper uses it)."""
        window = self._likelihood_window()
        pairs = []
        for req in requests:
            context, continuation = encode_pair(self.tokenizer, self._encode, *req.args[:2])
            pairs.append((fit_context(context, continuation, window), continuation))
        results = self._score_likelihoods(requests, pairs, [0] * len(pairs), disable_tqdm)
        for req, res in zip(requests, results):
            if hasattr(self, "cache_hook"):
                self.cache_hook.add_partial("loglikelihood", req.args, (res.logprob, res.is_greedy))
        return [(res.logprob, res.is_greedy) for res in results]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Sum of the ELBOs of disjoint windows of the text, each given only the model's start tokens
        (lm-eval's HF backend with context_len=1; one window when the model has no position limit)."""
        window, prefix = self._likelihood_window(), self._encode("")
        owners, pairs, parts = [], [], []
        for n, req in enumerate(requests):
            tokens = self.tokenizer(req.args[0], add_special_tokens=False).input_ids
            for part, pair in enumerate(rolling_windows(tokens, prefix, window)):
                owners.append(n)
                pairs.append(pair)
                parts.append(part)
        results = self._score_likelihoods([requests[n] for n in owners], pairs, parts, disable_tqdm)
        totals = [0.0] * len(requests)
        for n, res in zip(owners, results):
            totals[n] += res.logprob
        return totals

    def _likelihood_window(self) -> int | None:
        limits = [v for v in (self.max_length, self.denoiser.max_length) if v is not None]
        return min(limits) if limits else None

    def _score_likelihoods(self, requests, pairs, parts: list[int], disable_tqdm: bool) -> list[LikelihoodResult]:
        """ELBO of every token pair; request i's seed depends on (seed, task, doc id, window) only.
        Records per document: summed compute and one entry per request."""
        seeds = [
            (request_seed(self.seed, getattr(req, "task_name", None), getattr(req, "doc_id", None), i) + part)
            % (2**63 - 1)
            for i, (req, part) in enumerate(zip(requests, parts))
        ]
        results = elbo_loglikelihoods(
            self.denoiser, pairs, seeds, self.elbo,
            progress=self.progress and not disable_tqdm and self.data_parallel.is_main,
        )
        entries = [
            ((getattr(req, "task_name", None), getattr(req, "doc_id", None)),
             {"idx": getattr(req, "idx", None), "logprob": res.logprob, "stderr": res.stderr,
              "is_greedy": res.is_greedy, "context_tokens": res.context_tokens,
              "continuation_tokens": res.continuation_tokens, **res.compute})
            for req, res in zip(requests, results)
        ]
        # a document's choices may be scored on different ranks: merge them entry by entry on rank 0
        for part in self.data_parallel.gather_object(entries) or []:
            for key, entry in part:
                record = self.records.setdefault(key, {"mc_num": self.elbo.mc_num, "likelihood_requests": []})
                record["likelihood_requests"].append(entry)
                record["likelihood_requests"].sort(key=lambda e: (e["idx"] is None, e["idx"] or 0))
                for name, value in entry.items():
                    if name in LIKELIHOOD_COMPUTE:
                        record[name] = record.get(name, 0) + value
        return results

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
            cache=self.cache,
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
            key = repr((dataclasses.astuple(config), gen_kwargs.get("max_gen_toks"), _suppresses(gen_kwargs)))
            configs[key] = config
            groups.setdefault(key, []).append(i)
        for key, idx in groups.items():
            config = configs[key]
            prompts = [self._encode(requests[i].args[0]) for i in idx]
            seeds = [
                request_seed(self.seed, getattr(requests[i], "task_name", None), getattr(requests[i], "doc_id", None), i)
                for i in idx
            ]
            first_kwargs = dict(requests[idx[0]].args[1]) if len(requests[idx[0]].args) > 1 else {}
            with self._eos_eot_suppression(_suppresses(first_kwargs)):
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
                text = self.response_text(res, dict(requests[i].args[1]) if len(requests[i].args) > 1 else {}, config)
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

    @contextmanager
    def _eos_eot_suppression(self, keep: bool) -> Iterator[None]:
        """With `keep=False` (a task whose `generation_kwargs` set `suppress_eos_eot: false`, the d1
        protocol: d1's generate.py has no `confidence_eos_eot_inf`), the model's suppressed ids
        (LLaDA's EOS/EoT) are ranked by confidence like any token for the duration of the block."""
        saved = self.denoiser.suppress_ids
        if not keep:
            self.denoiser.suppress_ids = ()
        try:
            yield
        finally:
            self.denoiser.suppress_ids = saved

    def response_text(self, res: SequenceResult, gen_kwargs: dict, config: DecodeConfig) -> str:
        """The text handed back to lm-eval. By default the decode up to EOS, special tokens skipped,
        cut at the first stop string. A task whose `generation_kwargs` set `full_canvas: true` (the
        d1 protocol) gets every generated token decoded with its special tokens, as d1's
        `batch_decode(out[:, -gen_length:], skip_special_tokens=False)` (slots an early stop left
        masked are dropped). Either way at most the task's `max_gen_toks` tokens are kept."""
        max_toks = gen_kwargs.get("max_gen_toks")
        limit = int(max_toks) if max_toks is not None and int(max_toks) < config.gen_length else None
        if _as_bool(gen_kwargs.get("full_canvas", False)):
            kept = [t for t in res.tokens[:limit] if t != self.denoiser.mask_id]
            return self.tokenizer.decode(kept, skip_special_tokens=False)
        if limit is None:
            return res.text
        # the canvas is longer than the task allows: keep at most max_gen_toks tokens
        return cut_at_stop(generation_text(self.denoiser, res.tokens, config.stop_on_eos, limit), config.until)

    def _encode(self, context: str) -> list[int]:
        ids = self.tokenizer(context, add_special_tokens=self.add_special_tokens).input_ids
        # a trailing EOS from the tokenizer would end the generation before it starts
        eos = self.denoiser.eos_id
        while self.add_special_tokens and ids and eos is not None and ids[-1] == eos and len(ids) > 1:
            ids = ids[:-1]
        return list(ids)


def _suppresses(gen_kwargs: dict) -> bool:
    """Whether a request keeps the model's EOS/EoT confidence suppression (the default)."""
    return _as_bool(gen_kwargs.get("suppress_eos_eot", True))


# ------------------------------------------------------------------------ compute in lm-eval's samples
#: the fields of a record copied into a logged sample's `compute` (the trajectory too when recorded)
COMPUTE_FIELDS = (
    "nfe", "nfe_to_stop", "forwards", "backwards", "forward_equivalents", "tokens_processed", "wall_time_s",
    "forward_flops", "flops", "fallbacks", "stopped_early", "prompt_tokens", "gen_length", "steps", "block_length",
)
_WATCHERS: list[list[BoeLM]] = []


@contextmanager
def models_created() -> Iterator[list[BoeLM]]:
    """Collects the `BoeLM`s constructed inside the block (lm-eval builds its model from a name)."""
    created: list[BoeLM] = []
    _WATCHERS.append(created)
    try:
        yield created
    finally:
        _WATCHERS.remove(created)


def sample_compute(record: dict, sampler: Sampler | None = None) -> dict:
    """A logged sample's `compute`: the metered cost of its generation (NFE, forwards, backwards,
    forward-equivalents, tokens processed, wall time), the sampler's fallbacks and early stop, the
    canvas layout, the sampler with its parameters, and the entropy trajectory when recorded."""
    compute = {key: record[key] for key in COMPUTE_FIELDS if key in record}
    if sampler is not None:
        compute["sampler"] = sampler.name
        compute["sampler_params"] = {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
                                     for k, v in sampler.params().items()}
    if record.get("trajectory") is not None:
        compute["trajectory"] = record["trajectory"]
    return compute


def attach_compute(samples: dict[str, list[dict]], lm: BoeLM) -> int:
    """Add `compute` (see `sample_compute`) to each of lm-eval's logged samples whose request `lm`
    generated, matched by (task name, doc id); returns how many samples got one."""
    attached = 0
    for task_name, task_samples in samples.items():
        for sample in task_samples:
            record = lm.records.get((task_name, sample.get("doc_id")))
            if record is not None:
                sample["compute"] = sample_compute(record, lm.sampler)
                attached += 1
    return attached


def with_compute_in_samples(simple_evaluate: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap `lm_eval.simple_evaluate` so that the samples it returns (`--log_samples`) carry each
    generation's compute, whether the `boe` model is passed in or built by lm-eval from its name."""

    @functools.wraps(simple_evaluate)
    def run(*args: Any, **kwargs: Any) -> Any:
        with models_created() as created:
            results = simple_evaluate(*args, **kwargs)
        model = kwargs.get("model", args[0] if args else None)
        models = [model] if isinstance(model, BoeLM) else created
        if results and results.get("samples"):
            for lm in models:
                attach_compute(results["samples"], lm)
        return results

    return run


__all__ = [
    "BoeLM",
    "attach_compute",
    "models_created",
    "request_seed",
    "sample_compute",
    "with_compute_in_samples",
]
