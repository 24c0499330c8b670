"""Benchmark (issue 19): the harness's decoding loop next to a bare LLaDA low-confidence loop, batch fill on
GSM8K prompts, and two per-step costs of the loop at LLaDA's vocabulary size.

1. Throughput, side by side in one run: `generate_batched` with the `confidence` sampler (the harness: canvas,
   meter, NaN guard, stop watcher, StepContext, result rows) against `bare_low_confidence`, an independent
   restatement of LLaDA's `generate.py` low-confidence loop at T = 0 (blocks, `get_num_transfer_tokens`,
   softmax confidence of the argmax, top-k per row), batched, calling the same denoiser's `logits`. Runs are
   interleaved A B A B ... and the reported figure is the median of the per-pair ratios harness / bare, so slow
   phases of a shared machine hit both sides. Every pair's tokens are compared: harness and bare loop must write
   identical tokens. Models: the built-in `builtin:tiny_addition` (its own task: 12 slots, 6 steps) and a random
   LLaDA-architecture model built from a config with the project's LLaDA stand-in remote code
   (tests/fixtures/remote_code/llada), loaded through the real loader (`load_denoiser`).
2. Batch fill: how many prompts share a batch when `generate_batched` groups the vendored GSM8K prompts (d1
   zero-shot and 5-shot gsm8k_base, contexts built by lm-eval from tasks/gsm8k, no chat template) for LLaDA without
   mask injection (its code ignores the padding mask: equal-length batches only), with the mask injected (the
   load-time probe's verdict on the LLaDA stand-in, any lengths) and with it in bf16 (batches of one canonical
   canvas width). Fill = mean rows per batch / batch_size. Prompt lengths come from a byte-level BPE tokenizer
   trained here on the GSM8K text (LLaDA's own tokenizer cannot be downloaded here).
3. Per-step costs at vocabulary 126,464 (LLaDA's): inside real `generate` runs on a random LLaDA-architecture model
   of that vocabulary, the wall time of the stop watcher (`StopWatcher.update`, with a stop string as gsm8k_base
   has) and of the NaN guard (`unusable_slots`), as a share of the step time (boe_eval.decoding.stopping /
   .prediction), and each against its former version (whole-prefix decode; logsumexp), restated here, side by
   side with a check that both give the same verdicts. The loop is only wrapped with timers, not changed.
4. A profile of one harness run and one bare run (cProfile, own time per function) on the realistic model.

    python scripts/bench_throughput.py                      # everything, a few minutes on one CPU thread
    python scripts/bench_throughput.py --parts throughput --repeats 5

Writes <out>/README.md (command, machine, tables) and <out>/bench_throughput.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.fixtures.remote_code: the LLaDA stand-in remote code

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

#: LLaDA-8B's vocabulary (embedding rows), the size at which item 4's per-step costs are measured
LLADA_VOCAB = 126464


# ------------------------------------------------------------------------------------------ the bare loop


@torch.no_grad()
def bare_low_confidence(
    logits_fn: Callable[[Tensor], Tensor],
    prompts: Tensor,
    mask_id: int,
    gen_length: int,
    steps: int,
    block_length: int,
    forbidden_ids: Sequence[int] = (),
) -> Tensor:
    """LLaDA's low-confidence remasking at temperature 0 (LLaDA `generate.py`), restated: the canvas is
    [prompt, mask x gen_length]; per block the masked count is spread evenly over the block's steps (remainder to
    the earliest steps); each step takes the argmax x0 at every position, its softmax probability as confidence
    (-inf outside the masked slots of the current and earlier blocks), and writes the top-k per row.
    `forbidden_ids` (the mask token) get -inf logits first, as the harness never writes them.
    Returns the generated region [b, gen_length]."""
    batch, prompt_length = prompts.shape
    x = torch.full((batch, prompt_length + gen_length), mask_id, dtype=torch.long, device=prompts.device)
    x[:, :prompt_length] = prompts
    forbidden = torch.tensor(sorted(set(forbidden_ids) | {mask_id}), dtype=torch.long, device=x.device)
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    for block in range(num_blocks):
        end = prompt_length + (block + 1) * block_length
        n_masked = (x[:, end - block_length : end] == mask_id).sum(1, keepdim=True)
        counts = (n_masked // steps_per_block).repeat(1, steps_per_block)
        counts += torch.arange(steps_per_block, device=x.device)[None] < (n_masked % steps_per_block)
        for step in range(steps_per_block):
            masked = x == mask_id
            logits = logits_fn(x).float()
            logits[..., forbidden] = float("-inf")
            x0 = logits.argmax(-1)
            p = torch.softmax(logits, dim=-1)
            x0_p = p.gather(-1, x0[..., None]).squeeze(-1)
            x0_p[:, end:] = float("-inf")
            x0 = torch.where(masked, x0, x)
            confidence = torch.where(masked, x0_p, torch.tensor(float("-inf"), device=x.device))
            transfer = torch.zeros_like(masked)
            for j in range(batch):
                _, picked = torch.topk(confidence[j], k=int(counts[j, step]))
                transfer[j, picked] = True
            x[transfer] = x0[transfer]
    return x[:, prompt_length:]


# ------------------------------------------------------------------------------------------ models


def stand_in_llada(directory: Path, **config) -> object:
    """A random LLaDA-architecture model written with the project's LLaDA stand-in remote code and loaded through
    `load_denoiser` (remote code, padding probe) like a real LLaDA checkpoint. The stand-in's init_std (0.15)
    keeps a random model's confidences apart: with 0.02 they are all within 1e-6 of each other, and the order of
    such near-ties can come out differently in two correct implementations (log-softmax + exp vs softmax)."""
    from boe_eval.models import load_denoiser
    from tests.fixtures.remote_code import make_remote_code_model

    make_remote_code_model("llada", directory, max_sequence_length=4096, **config)
    return load_denoiser(directory)


def parameters(denoiser) -> int:
    return sum(p.numel() for p in denoiser.model.parameters())


def gsm8k_questions(n: int) -> list[str]:
    lines = (ROOT / "tasks/gsm8k/data/test.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines[:n]]


def train_gsm8k_bpe(vocab_size: int = 32768):
    """A byte-level BPE tokenizer trained on the vendored GSM8K text (a stand-in for LLaDA's tokenizer, which
    cannot be downloaded here), with LLaDA's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = []
    for split in ("train", "test"):
        for line in (ROOT / f"tasks/gsm8k/data/{split}.jsonl").read_text().splitlines():
            doc = json.loads(line)
            texts += [doc["question"], doc["answer"]]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|eot_id|>", "<|mdm_mask|>"], show_progress=False)
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


# ------------------------------------------------------------------------------------------ 1. throughput


def throughput(denoiser, prompts: list[list[int]], layout: dict, batch_sizes: list[int], repeats: int,
               label: str) -> list[dict]:
    """Harness vs bare loop on the first b prompts for each batch size b, interleaved, with a token check."""
    from boe_eval.decoding import DecodeConfig, generate_batched
    from boe_eval.samplers import build_sampler

    config = DecodeConfig(gen_length=layout["gen_length"], steps=layout["steps"], block_length=layout["block_length"])

    def harness(batch: list[list[int]]) -> Tensor:
        out = generate_batched(denoiser, batch, build_sampler("confidence"), config, list(range(len(batch))),
                               batch_size=len(batch), progress=False)
        return torch.tensor([r.tokens for r in out])

    def bare(batch: list[list[int]]) -> Tensor:
        ids = torch.tensor(batch, dtype=torch.long, device=denoiser.device)
        return bare_low_confidence(lambda x: denoiser.logits(x), ids, denoiser.mask_id, layout["gen_length"],
                                   layout["steps"], layout["block_length"], denoiser.forbidden_ids).cpu()

    harness(prompts[:1]), bare(prompts[:1])  # warm-up (allocator, kernels, tokenizer)
    rows = []
    for b in batch_sizes:
        batch = prompts[:b]
        ratios, t_harness, t_bare, identical = [], [], [], True
        for _ in range(repeats):
            start = time.perf_counter()
            a = harness(batch)
            mid = time.perf_counter()
            r = bare(batch)
            end = time.perf_counter()
            t_harness.append(mid - start)
            t_bare.append(end - mid)
            ratios.append((mid - start) / (end - mid))
            identical &= torch.equal(a, r)
        tokens = b * layout["gen_length"]
        row = {
            "model": label, "batch": b, "repeats": repeats,
            "harness_s": statistics.median(t_harness), "bare_s": statistics.median(t_bare),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "harness_tok_s": tokens / statistics.median(t_harness), "bare_tok_s": tokens / statistics.median(t_bare),
            "tokens_identical": identical,
        }
        rows.append(row)
        print(f"[throughput] {label:10s} b={b:3d} harness {row['harness_s']:7.3f}s bare {row['bare_s']:7.3f}s "
              f"ratio {row['ratio_median']:.3f} [{row['ratio_min']:.3f}, {row['ratio_max']:.3f}] "
              f"identical={identical}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------ 2. batch fill


def gsm8k_contexts() -> dict[str, list[str]]:
    """lm-eval's own contexts of the vendored GSM8K tasks (no chat template): d1 zero-shot and 5-shot base."""
    from lm_eval.tasks import TaskManager, get_task_dict

    tasks = get_task_dict(["gsm8k_d1", "gsm8k_base"], TaskManager(include_path=str(ROOT / "tasks")))
    out = {}
    for name in ("gsm8k_d1", "gsm8k_base"):
        task = tasks[name]
        task.build_all_requests(limit=None, rank=0, world_size=1)
        out[name] = [instance.args[0] for instance in sorted(task.instances, key=lambda i: i.doc_id)]
    return out


@contextlib.contextmanager
def recorded_batches(sizes: list[int]):
    """Within the context `generate_batched` forms its batches as usual but decodes nothing: each batch's size is
    appended to `sizes`."""
    from boe_eval.decoding import loop

    original = loop.generate

    def record(denoiser, prompts, sampler, config, seeds=None):
        sizes.append(len(prompts))
        return [None] * len(prompts)

    loop.generate = record
    try:
        yield
    finally:
        loop.generate = original


#: the batching regimes of the fill table: (label, honours the padding mask, dtype)
FILL_REGIMES = (
    ("LLaDA, mask ignored (equal lengths)", False, torch.float32),
    ("LLaDA, mask injected, fp32", True, torch.float32),
    ("LLaDA, mask injected, bf16 (canonical widths)", True, torch.bfloat16),
)
#: d1's generation length; the canonical widths of bf16 batches depend on it
FILL_GEN_LENGTH = 256


def batch_fill(lengths: list[int], batch_size: int, honours_padding_mask: bool,
               dtype: torch.dtype = torch.float32) -> dict:
    """Rows per batch when `generate_batched` groups prompts of these token lengths for a model that honours the
    padding mask (natively or injected) or not, in `dtype` (16-bit: batches of one canonical canvas width)."""
    from boe_eval.decoding import DecodeConfig, generate_batched

    sizes: list[int] = []
    prompts = [[0] * n for n in lengths]
    model = SimpleNamespace(honours_padding_mask=honours_padding_mask, dtype=dtype, max_length=None)
    config = DecodeConfig(gen_length=FILL_GEN_LENGTH, steps=FILL_GEN_LENGTH // 2, block_length=32)
    with recorded_batches(sizes):
        generate_batched(model, prompts, None, config, list(range(len(prompts))), batch_size=batch_size, progress=False)
    return {"batches": len(sizes), "mean_rows": statistics.mean(sizes), "fill": statistics.mean(sizes) / batch_size,
            "full_batches": sum(s == batch_size for s in sizes), "single_row_batches": sum(s == 1 for s in sizes)}


def fill_table(batch_sizes: list[int], workdir: Path) -> tuple[list[dict], dict]:
    tokenizer = train_gsm8k_bpe()
    contexts = gsm8k_contexts()
    # the verdict mask injection gets from the load-time probe on the LLaDA stand-in (the hub code's behaviour)
    verdict = stand_in_llada(workdir / "llada_probe", d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64,
                             vocab_size=len(tokenizer)).padding_mask
    rows, facts = [], {"tokenizer": f"byte-level BPE trained on GSM8K, {len(tokenizer)} ids",
                       "probe_verdict": verdict}
    for task, texts in contexts.items():
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        facts[task] = {"prompts": len(lengths), "distinct_lengths": len(set(lengths)), "min": min(lengths),
                       "median": statistics.median(lengths), "max": max(lengths)}
        for b in batch_sizes:
            for label, honours, dtype in FILL_REGIMES:
                if honours and verdict != "injected":
                    continue
                row = {"task": task, "batch_size": b, "model": label, **batch_fill(lengths, b, honours, dtype)}
                rows.append(row)
                print(f"[fill] {task:10s} b={b:3d} {row['model']:46s} batches {row['batches']:5d} "
                      f"fill {row['fill']:.3f}", flush=True)
    return rows, facts


# ------------------------------------------------------------------------------------------ 3. per-step costs


@contextlib.contextmanager
def timed_loop_parts(seconds: dict[str, list[float]]):
    """Within the context, every call of the loop's `StopWatcher.update` and `unusable_slots` (the NaN guard)
    and every metered forward appends its wall time to `seconds[name]` (wrappers only, for measurement)."""
    from boe_eval.decoding import prediction, stopping
    from boe_eval.decoding.meter import MeteredDenoiser

    def timer(name: str, function):
        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            out = function(*args, **kwargs)
            seconds.setdefault(name, []).append(time.perf_counter() - start)
            return out
        return wrapped

    originals = (stopping.StopWatcher.update, prediction.unusable_slots, MeteredDenoiser.forward)
    stopping.StopWatcher.update = timer("stop_watcher", originals[0])
    prediction.unusable_slots = timer("nan_guard", originals[1])
    MeteredDenoiser.forward = timer("forward", originals[2])
    try:
        yield
    finally:
        stopping.StopWatcher.update, prediction.unusable_slots, MeteredDenoiser.forward = originals


def step_costs(workdir: Path, model_config: dict, batch: int, prompt_length: int, gen_length: int, steps: int,
               repeats: int) -> tuple[list[dict], dict]:
    """Stop-watcher and NaN-guard time per step inside `generate` on a random LLaDA-architecture model with
    LLaDA's vocabulary; the GSM8K BPE tokenizer does the decoding, with gsm8k_base's stop strings."""
    from boe_eval.decoding import DecodeConfig, generate
    from boe_eval.samplers import build_sampler

    denoiser = stand_in_llada(workdir / "llada_vocab", **model_config)
    tokenizer = train_gsm8k_bpe()
    denoiser.tokenizer = tokenizer
    prompts = [ids[:prompt_length] for ids in tokenizer(gsm8k_questions(4 * batch))["input_ids"]
               if len(ids) >= prompt_length][:batch]
    rows = []
    for until in ((), ("Question:", "</s>", "<|im_end|>")):
        config = DecodeConfig(gen_length=gen_length, steps=steps, until=until)
        generate(denoiser, prompts[:1], build_sampler("confidence"), DecodeConfig(gen_length=8, steps=1))  # warm-up
        for _ in range(repeats):
            seconds: dict[str, list[float]] = {}
            with timed_loop_parts(seconds):
                start = time.perf_counter()
                generate(denoiser, prompts, build_sampler("confidence"), config)
                total = time.perf_counter() - start
            n = len(seconds["forward"])
            rows.append({"stop_strings": bool(until), "steps": n, "step_ms": 1e3 * total / n,
                         "forward_ms": 1e3 * statistics.mean(seconds["forward"]),
                         "stop_watcher_ms": 1e3 * statistics.mean(seconds["stop_watcher"]),
                         "nan_guard_ms": 1e3 * statistics.mean(seconds["nan_guard"])})
            row = rows[-1]
            row["stop_watcher_share"] = row["stop_watcher_ms"] / row["step_ms"]
            row["nan_guard_share"] = row["nan_guard_ms"] / row["step_ms"]
            print(f"[step costs] stop strings={bool(until)!s:5s} step {row['step_ms']:8.1f} ms forward "
                  f"{row['forward_ms']:8.1f} ms watcher {row['stop_watcher_ms']:6.2f} ms "
                  f"({100 * row['stop_watcher_share']:.2f}%) guard {row['nan_guard_ms']:6.2f} ms "
                  f"({100 * row['nan_guard_share']:.2f}%)", flush=True)
    # the watcher's decode cost for a full-length prefix of real text, per row (the loop decodes every row)
    answer = json.loads((ROOT / "tasks/gsm8k/data/test.jsonl").read_text().splitlines()[0])["answer"]
    ids = (tokenizer(answer * 8)["input_ids"] * 2)[:256]
    decode = []
    for _ in range(50):
        start = time.perf_counter()
        tokenizer.decode(ids, skip_special_tokens=True)
        decode.append(time.perf_counter() - start)
    # what each loop does over the vocabulary per step, on logits of this run's shape [batch, L, V]
    logits = torch.randn(batch, prompt_length + gen_length, model_config["vocab_size"])
    ops = {
        "logsumexp over the canvas (the NaN guard before it kept to eligible slots)": lambda: torch.logsumexp(logits, dim=-1),
        "log_softmax + exp (harness: StepContext.probs)": lambda: torch.log_softmax(logits, dim=-1).exp(),
        "softmax (bare loop)": lambda: torch.softmax(logits, dim=-1),
        "argmax (both)": lambda: logits.argmax(-1),
    }
    vocab_ops = []
    for name, op in ops.items():
        op()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            op()
            times.append(time.perf_counter() - start)
        vocab_ops.append({"operation": name, "ms": 1e3 * statistics.median(times)})
    del logits
    facts = {"parameters": parameters(denoiser), "config": model_config, "batch": batch, "vocab_ops": vocab_ops,
             "watcher_before_after": watcher_costs(tokenizer), "guard_before_after": guard_costs(),
             "prompt_length": prompt_length, "gen_length": gen_length, "steps": steps,
             "decode_256_tokens_ms_per_row": 1e3 * statistics.median(decode)}
    return rows, facts


def old_watcher_met(tokenizer, eos_ids: set, until: tuple, x: Tensor, masked: Tensor, start: int, gen: int,
                    met: list[bool]) -> None:
    """The stop watcher before issue 19, restated: every unmet row's whole unmasked prefix decoded every step."""
    for row in range(x.shape[0]):
        if met[row]:
            continue
        region = masked[row, start : start + gen]
        first = int(region.nonzero()[0]) if region.any() else gen
        prefix = x[row, start : start + first].tolist()
        hit = any(t in eos_ids for t in prefix)
        if not hit and until:
            text = tokenizer.decode(prefix, skip_special_tokens=True)
            hit = any(s in text for s in until)
        met[row] = hit


def watcher_costs(tokenizer, batch: int = 32, gen_length: int = 256, block_length: int = 32,
                  per_step: int = 2) -> dict:
    """Per-step time of the stop watcher before (whole prefix decoded) and now (new tokens + look-back) on a
    simulated d1 decode: GSM8K answers as the generated text, blocks of 32 written left to right, 2 random slots
    per step; both must report the same rows as stopped at every step."""
    from boe_eval.decoding.canvas import Canvas
    from boe_eval.decoding.stopping import StopWatcher

    until = ("Question:", "</s>", "<|im_end|>")
    lines = (ROOT / "tasks/gsm8k/data/test.jsonl").read_text().splitlines()
    answers = [json.loads(line)["answer"] + "\n\nQuestion: next" for line in lines[:batch]]
    space = tokenizer(" ", add_special_tokens=False)["input_ids"][-1]
    targets = [(ids + [space] * gen_length)[:gen_length] for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]]
    mask_id, prompt = tokenizer.convert_tokens_to_ids("<|mdm_mask|>"), 16
    x = torch.full((batch, prompt + gen_length), mask_id)
    x[:, :prompt] = space
    is_masked = torch.zeros_like(x, dtype=torch.bool)
    is_masked[:, prompt:] = True
    canvas = Canvas(x=x, attention_mask=torch.ones_like(x), is_masked=is_masked, gen_start=torch.full((batch,), prompt),
                    gen_region=is_masked.clone(), positions=torch.arange(x.shape[1]))
    target = torch.tensor(targets)
    watcher = StopWatcher(SimpleNamespace(tokenizer=tokenizer, eos_id=tokenizer.eos_token_id), until, True,
                          gen_length, batch)
    old_met, old_s, new_s, agree = [False] * batch, [], [], True
    generator = torch.Generator().manual_seed(0)
    meter = SimpleNamespace(nfe=[0] * batch)
    for block in range(gen_length // block_length):
        for _ in range(block_length // per_step):
            for row in range(batch):
                free = is_masked[row, prompt + block * block_length : prompt + (block + 1) * block_length].nonzero()
                pick = free[torch.randperm(len(free), generator=generator)[:per_step]].squeeze(1)
                slots = prompt + block * block_length + pick
                x[row, slots] = target[row, slots - prompt]
                is_masked[row, slots] = False
            start = time.perf_counter()
            old_watcher_met(tokenizer, watcher.eos_ids, until, x, is_masked, prompt, gen_length, old_met)
            mid = time.perf_counter()
            watcher.update(canvas, torch.arange(batch), meter)
            new_s.append(time.perf_counter() - mid)
            old_s.append(mid - start)
            agree &= old_met == watcher.met
    return {"batch": batch, "gen_length": gen_length, "steps": len(old_s), "before_ms": 1e3 * statistics.mean(old_s),
            "after_ms": 1e3 * statistics.mean(new_s), "same_verdicts_every_step": agree,
            "rows_stopped": sum(watcher.met)}


def guard_costs(batch: int = 8, length: int = 128, block: tuple[int, int] = (64, 96), vocab: int = LLADA_VOCAB) -> dict:
    """The NaN guard before (logsumexp over the eligible slots' vocabulary) and now (`unusable_slots`: one amax),
    on logits [batch, length, vocab] with NaN, +inf and all--inf slots planted; same verdicts required."""
    from boe_eval.decoding.prediction import unusable_slots

    logits = torch.randn(batch, length, vocab, generator=torch.Generator().manual_seed(0))
    logits[0, 70, 5], logits[1, 80, 7], logits[2, 90] = float("nan"), float("inf"), float("-inf")
    eligible = torch.zeros(batch, length, dtype=torch.bool)
    eligible[:, block[0] : block[1]] = True

    def before() -> Tensor:
        out = torch.zeros_like(eligible)
        out[eligible] = ~torch.isfinite(torch.logsumexp(logits[eligible], dim=-1))
        return out

    timings = {}
    for name, guard in (("before", before), ("after", lambda: unusable_slots(logits, eligible))):
        guard()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            verdict = guard()
            times.append(time.perf_counter() - start)
        timings[name] = (1e3 * statistics.median(times), verdict)
    return {"shape": [batch, length, vocab], "eligible_slots": int(eligible.sum()), "before_ms": timings["before"][0],
            "after_ms": timings["after"][0], "same_verdicts": torch.equal(timings["before"][1], timings["after"][1]),
            "unusable_found": int(timings["after"][1].sum())}


def profile_pair(denoiser, prompts: list[list[int]], layout: dict, top: int = 8) -> list[dict]:
    """cProfile of one harness run and one bare run on the same batch: seconds per function (own time), the
    functions that take most in either, side by side."""
    import cProfile
    import pstats

    from boe_eval.decoding import DecodeConfig, generate_batched
    from boe_eval.samplers import build_sampler

    config = DecodeConfig(gen_length=layout["gen_length"], steps=layout["steps"], block_length=layout["block_length"])
    ids = torch.tensor(prompts, dtype=torch.long, device=denoiser.device)
    runs = {
        "harness": lambda: generate_batched(denoiser, prompts, build_sampler("confidence"), config,
                                            list(range(len(prompts))), batch_size=len(prompts), progress=False),
        "bare": lambda: bare_low_confidence(lambda x: denoiser.logits(x), ids, denoiser.mask_id, layout["gen_length"],
                                            layout["steps"], layout["block_length"], denoiser.forbidden_ids),
    }
    seconds: dict[str, dict[str, float]] = {}
    for name, run in runs.items():
        profile = cProfile.Profile()
        profile.enable()
        run()
        profile.disable()
        for (path, _line, function), stat in pstats.Stats(profile).stats.items():
            label = function if path == "~" else f"{Path(path).name}:{function}"
            seconds.setdefault(label, {"harness": 0.0, "bare": 0.0})[name] += stat[2]
    ranked = sorted(seconds.items(), key=lambda kv: -max(kv[1].values()))[:top]
    total = {name: sum(v[name] for v in seconds.values()) for name in runs}
    vocab = {name: sum(v[name] for label, v in seconds.items()
                       if any(op in label for op in ("log_softmax", "'exp'", "softmax>", "'argmax'", "amax")))
             for name in runs}
    return {"rows": [{"function": label, "harness_s": v["harness"], "bare_s": v["bare"]} for label, v in ranked],
            "total_s": total, "vocabulary_ops_s": vocab}


# ------------------------------------------------------------------------------------------ report


def markdown(rows: list[dict], floatfmt: str = ".3f") -> str:
    import pandas as pd

    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=floatfmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["throughput", "fill", "costs"],
                        choices=["throughput", "fill", "costs"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved harness/bare pairs per batch size")
    parser.add_argument("--realistic", default="d_model=256,n_heads=4,n_layers=4,mlp_hidden_size=688,vocab_size=32768",
                        help="LLaDA stand-in config of the realistic-size model")
    parser.add_argument("--realistic-layout", default="32,32,8",
                        help="prompt_length,gen_length,steps of the realistic model (one block)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "results/bench_throughput"))
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite <out>/README.md from <out>/bench_throughput.json, measuring nothing")
    args = parser.parse_args(argv)
    if args.render_only:
        report = json.loads((Path(args.out) / "bench_throughput.json").read_text())
        (Path(args.out) / "README.md").write_text(render(report))
        return 0
    if any(b <= 0 for b in args.batch_sizes) or args.repeats <= 0:
        raise SystemExit(f"--batch-sizes {args.batch_sizes} / --repeats {args.repeats} is invalid: positive integers")
    try:
        realistic = {k: float(v) if "." in v else int(v) for k, v in (i.split("=") for i in args.realistic.split(","))}
        prompt_length, gen_length, steps = (int(v) for v in args.realistic_layout.split(","))
    except ValueError:
        raise SystemExit(f"--realistic {args.realistic!r} / --realistic-layout {args.realistic_layout!r} is "
                         "invalid: key=int,... and three integers") from None

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = ("python scripts/bench_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    report: dict = {"command": command,
                    "machine": f"{platform.machine()} CPU ({os.cpu_count()} cores), {args.threads} torch thread(s), "
                               f"torch {torch.__version__}, Python {platform.python_version()}",
                    "started": started}
    existing = Path(args.out) / "bench_throughput.json"
    if set(args.parts) != {"throughput", "fill", "costs"} and existing.is_file():
        # a run of some parts replaces those parts only; each part records the command that made it
        fresh = {k: v for k, v in report.items() if k not in ("command", "started")}
        report = {**json.loads(existing.read_text()), **fresh}
    with tempfile.TemporaryDirectory(prefix="bench_throughput_") as tmp:
        workdir = Path(tmp)
        if "throughput" in args.parts:
            from boe_eval.models import load_denoiser
            from boe_eval.tiny.registry import get_tiny_task

            rows, models = [], {}
            builtin = load_denoiser("builtin:tiny_addition")
            task = get_tiny_task("tiny_addition")
            prompts = [builtin.tokenizer(task.prompt(d), add_special_tokens=False).input_ids
                       for d in task.test_docs(max(args.batch_sizes))]
            layout = {"gen_length": task.gen_length, "steps": task.steps, "block_length": task.gen_length}
            models["builtin"] = {"model": "builtin:tiny_addition (BERT)", "parameters": parameters(builtin),
                                 "prompt_length": len(prompts[0]), **layout}
            rows += throughput(builtin, prompts, layout, args.batch_sizes, args.repeats, "builtin")

            model = stand_in_llada(workdir / "llada_realistic", **realistic)
            tokens = model.tokenizer(gsm8k_questions(max(args.batch_sizes)), add_special_tokens=False)["input_ids"]
            prompts = [ids[:prompt_length] for ids in tokens]
            layout = {"gen_length": gen_length, "steps": steps, "block_length": gen_length}
            models["realistic"] = {"model": f"random LLaDA-architecture stand-in ({args.realistic})",
                                   "parameters": parameters(model), "prompt_length": prompt_length,
                                   "honours_padding_mask": model.honours_padding_mask, **layout}
            rows += throughput(model, prompts, layout, args.batch_sizes, args.repeats, "realistic")
            profile_batch = min(8, max(args.batch_sizes))
            profile = profile_pair(model, prompts[:profile_batch], layout)
            report["throughput"] = {"models": models, "rows": rows, "command": command, "started": started,
                                    "profile": {"batch": profile_batch, **profile}}
        if "fill" in args.parts:
            rows, facts = fill_table([b for b in args.batch_sizes if b > 1] or args.batch_sizes, workdir)
            report["fill"] = {"facts": facts, "rows": rows, "command": command, "started": started}
        if "costs" in args.parts:
            config = {**realistic, "vocab_size": LLADA_VOCAB}
            rows, facts = step_costs(workdir, config, batch=8, prompt_length=64, gen_length=64, steps=8, repeats=1)
            report["step_costs"] = {"facts": facts, "rows": rows, "command": command, "started": started}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_throughput.json").write_text(json.dumps(report, indent=2))
    text = render(report)
    (out / "README.md").write_text(text)
    print(text)
    return 0


def render(report: dict) -> str:
    lines = ["# Throughput: the harness's loop vs a bare LLaDA loop, batch fill, per-step costs (issue 19)", "",
             f"command: `{report['command'].strip()}`  ", f"machine: {report['machine']}  ",
             f"run: {report['started']}, on a 2-core machine shared with other jobs, so single timings are noisy: "
             "compare the medians of the side-by-side ratios, not absolute seconds. No GPU was available.", ""]
    if "throughput" in report:
        part = report["throughput"]
        lines += ["## Harness / bare loop", "", *made_by(report, part),
                  "`generate_batched` + `confidence` vs `bare_low_confidence` (LLaDA's low-confidence loop restated, "
                  "same denoiser, T = 0), on the first b prompts, one batch; runs interleaved harness, bare, harness, "
                  "bare...; ratio = median (min, max) of the per-pair ratios harness time / bare time. "
                  "`tokens_identical`: every pair wrote the same tokens. The bare loop differs from LLaDA's code in one "
                  "point: the mask token's logit is set to -inf, as the harness never writes it. The realistic model's "
                  "size was chosen so that the whole run stays a few minutes on one CPU thread; the stand-in's "
                  "init_std 0.15 keeps its confidences apart (at 0.02 they lie within 1e-6 of each other, and a run at "
                  "0.02 had the two loops write different tokens at batch 8: an order of near-ties, not a bug "
                  "either loop could be blamed for).", ""]
        for name, facts in part["models"].items():
            lines.append(f"- {name}: {facts['model']}, {facts['parameters'] / 1e6:.2f} M parameters, prompt "
                         f"{facts['prompt_length']} tokens, gen_length {facts['gen_length']}, steps {facts['steps']}"
                         + (f", honours padding mask: {facts['honours_padding_mask']}"
                            if "honours_padding_mask" in facts else ""))
        lines += ["", markdown(part["rows"]), ""]
        if "profile" in part:
            prof = part["profile"]
            lines += [f"Where the time goes (realistic model, batch {prof['batch']}, one harness run and one bare run "
                      "under cProfile, own time per function in seconds, the largest in either). Whole run: harness "
                      f"{prof['total_s']['harness']:.2f} s, bare {prof['total_s']['bare']:.2f} s; of it, work over the "
                      f"vocabulary (log_softmax, exp, softmax, argmax, amax): harness "
                      f"{prof['vocabulary_ops_s']['harness']:.2f} s, bare {prof['vocabulary_ops_s']['bare']:.2f} s. "
                      "The harness computes `StepContext.probs` for `confidence` as log_softmax then exp, the bare "
                      "loop one softmax; the harness runs the output head and that work on the step window only (the "
                      "generation region: docs/design.md \"Step window\"), the bare loop, as LLaDA's code, on every "
                      "canvas position, prompt included: where the harness is faster than the bare loop, that is "
                      "why.", "",
                      markdown(prof["rows"]), ""]
    if "fill" in report:
        part = report["fill"]
        lines += ["## Batch fill on GSM8K prompts", "", *made_by(report, part),
                  "Batches as `generate_batched` forms them (its grouping run on the prompt lengths, nothing decoded). "
                  "fill = mean rows per batch / batch_size. Contexts built by lm-eval from tasks/gsm8k without a chat "
                  "template (a chat template adds the same tokens to every prompt, so it leaves the fill unchanged); "
                  f"tokenizer: {part['facts']['tokenizer']} (LLaDA's own is not available here). Regimes: LLaDA's "
                  "own code ignores the mask (equal-length batches only); with the mask injected (the load-time "
                  "probe's verdict on the LLaDA stand-in: "
                  f"{part['facts'].get('probe_verdict', 'not recorded')}) any lengths share a batch in fp32, and in "
                  "bf16 rows of one canonical canvas width (prompt + gen_length 256 rounded up to 32).", ""]
        for task in ("gsm8k_d1", "gsm8k_base"):
            f = part["facts"][task]
            lines.append(f"- {task}: {f['prompts']} prompts, {f['distinct_lengths']} distinct lengths "
                         f"(min {f['min']}, median {f['median']}, max {f['max']} tokens)")
        lines += ["", markdown(part["rows"]), ""]
    if "step_costs" in report:
        part = report["step_costs"]
        f = part["facts"]
        lines += ["## Per-step costs at vocabulary 126,464", "", *made_by(report, part),
                  f"`generate` (confidence) on a random LLaDA-architecture stand-in ({f['config']}, "
                  f"{f['parameters'] / 1e6:.1f} M parameters), batch {f['batch']}, prompt {f['prompt_length']} + "
                  f"gen {f['gen_length']} tokens, {f['steps']} steps, GSM8K BPE tokenizer; the loop's stop watcher "
                  "(`StopWatcher.update`) and NaN guard (`unusable_slots`, one max per eligible slot over the "
                  "vocabulary) timed inside the run. Without stop strings the watcher only scans the new tokens for "
                  "EOS; with gsm8k_base's stop strings it decodes the new tokens and a short look-back. "
                  "share = part / step time. "
                  f"Decoding a 256-token GSM8K prefix takes {f['decode_256_tokens_ms_per_row']:.3f} ms per row.",
                  "rest_ms = step - forward - watcher - guard: the rest of the loop (argmax, log-softmax and "
                  "confidence over the vocabulary, top-k, bookkeeping).", "",
                  markdown([{**row, "rest_ms": row["step_ms"] - row["forward_ms"] - row["stop_watcher_ms"]
                             - row["nan_guard_ms"],
                             "stop_watcher_share": f"{100 * row['stop_watcher_share']:.2f}%",
                              "nan_guard_share": f"{100 * row['nan_guard_share']:.2f}%"} for row in part["rows"]]),
                  ""]
        if "vocab_ops" in f:
            lines += ["Per-step work over the vocabulary on random logits of the same shape "
                      f"[{f['batch']}, {f['prompt_length'] + f['gen_length']}, {f['config']['vocab_size']}] "
                      "(median of 5): "
                      "the harness runs log-softmax + exp where the bare loop runs one softmax, both over every canvas "
                      "position, prompt included; the logsumexp row is what the NaN guard used to compute (on the "
                      "eligible slots only), which now takes one max per eligible slot (below).", "",
                      markdown(f["vocab_ops"], floatfmt=".1f"), ""]
        if "watcher_before_after" in f:
            w, g = f["watcher_before_after"], f["guard_before_after"]
            lines += ["Before and after (issue 19 item 4), side by side in this run:", "",
                      f"- stop watcher, batch {w['batch']}, gen_length {w['gen_length']}, {w['steps']} steps of a "
                      "simulated d1 decode (GSM8K answers as the text, blocks of 32 left to right, 2 slots per step), "
                      f"gsm8k_base's stop strings: {w['before_ms']:.2f} ms per step decoding every prefix whole, "
                      f"{w['after_ms']:.2f} ms now; same rows stopped at every step: "
                      f"{w['same_verdicts_every_step']} ({w['rows_stopped']} of {w['batch']} rows stop)",
                      f"- NaN guard on logits {g['shape']} with {g['eligible_slots']} eligible slots: "
                      f"{g['before_ms']:.1f} ms with a logsumexp, {g['after_ms']:.1f} ms with one max per slot; same "
                      f"verdicts: {g['same_verdicts']} ({g['unusable_found']} planted unusable slots found)", ""]
    lines += ["## Against the issue's targets", ""] + targets(report) + [
        "", "## Accelerator check", "",
        "`bash scripts/device_check.sh OUT_DIR` (random ~1B LLaDA-architecture model, bf16: tokens/s at batch 1/8/32, "
        "BoE vs confidence step time with and without ActiveQueryAttention at L = 256/512/1024, peak memory) was "
        "not run on an accelerator: none was available to this session. Its CPU `--smoke` mode is tested in "
        "tests/test_device_check.py.", ""]
    return "\n".join(lines)


def made_by(report: dict, part: dict) -> list[str]:
    """A line naming the command of a section made by another run than the report's."""
    command = part.get("command", report["command"])
    if command == report["command"]:
        return []
    return [f"This section: `{command}`, run {part.get('started', '')}.", ""]


def targets(report: dict) -> list[str]:
    """Issue 19's targets, each with the measured figure it is judged on."""
    lines = []
    if "throughput" in report:
        rows = [r for r in report["throughput"]["rows"] if r["model"] == "realistic" and r["batch"] >= 8]
        if rows:
            worst = max(r["ratio_median"] for r in rows)
            lines.append(f"- harness / bare <= 1.05 at batch >= 8 on the realistic model: "
                         f"{'met' if worst <= 1.05 else 'not met'} (median ratios "
                         + ", ".join(f"b={r['batch']}: {r['ratio_median']:.3f}" for r in rows) + ")")
        identical = all(r["tokens_identical"] for r in report["throughput"]["rows"])
        lines.append(f"- identical tokens, harness vs bare loop, every model, batch and repetition: {identical}")
    if "fill" in report:
        rows = report["fill"]["rows"]
        injected = [r for r in rows if "injected, fp32" in r["model"]]
        widths = [r for r in rows if "canonical widths" in r["model"]]
        ignored = [r for r in rows if "ignored" in r["model"]]
        if injected:
            lines.append("- batch fill >= 90% with mask injection: "
                         f"{'met' if min(r['fill'] for r in injected) >= 0.9 else 'not met'} (fill "
                         f"{min(r['fill'] for r in injected):.3f} to {max(r['fill'] for r in injected):.3f} with the "
                         "mask injected; without it, equal-length batches: "
                         f"{min(r['fill'] for r in ignored):.3f} to {max(r['fill'] for r in ignored):.3f}); in bf16, "
                         "where rows share a batch only at one canonical width (for batch invariance), "
                         f"{min(r['fill'] for r in widths):.3f} to {max(r['fill'] for r in widths):.3f}")
        else:
            lines.append("- batch fill with mask injection: not measured (the probe refused injection)")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
