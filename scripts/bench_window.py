"""Benchmark (issue 19 item 6): peak memory and step time of the decoding loop with the step window (the output
head and the softmax/entropy work on the generation window only, `DecodeConfig(logits_window=True)`, the default)
against the whole canvas (`logits_window=False`, the loop before the window), on a random LLaDA-architecture model
with LLaDA's vocabulary (126,464 ids) built locally from the project's LLaDA stand-in remote code
(tests/fixtures/remote_code/llada) and loaded through the real loader.

Each measurement runs in its own process (so its peak resident memory is its own): load the model, decode once to
warm up, record the resident set, decode again timed; the figure "step memory" is the peak resident set
(`ru_maxrss`) minus the resident set before the timed decode, i.e. what one decode adds on top of the loaded
model (with a fixed glibc mmap threshold, so freed tensors leave the resident set). Window and whole-canvas runs alternate (A B A B ...); the tables give medians. Both sides must write the
same tokens (checked). Sampler `confidence` at T = 0, prompts of random ordinary ids.

    OMP_NUM_THREADS=1 python scripts/bench_window.py                 # ~5 minutes on one CPU thread
    python scripts/bench_window.py --cases 300x1 1000x2 --steps 8 --repeats 3

Writes <out>/README.md (command, machine, table) and <out>/bench_window.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: LLaDA-8B's vocabulary (embedding rows)
LLADA_VOCAB = 126464
MODEL = {"d_model": 64, "n_heads": 4, "n_layers": 2, "mlp_hidden_size": 128, "vocab_size": LLADA_VOCAB,
         "embedding_size": LLADA_VOCAB, "max_sequence_length": 4096}


#: one thread; a fixed glibc mmap threshold so that every large tensor is mapped and unmapped on its own and the
#: resident set follows the live tensors (the default dynamic threshold keeps freed blocks in the heap)
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}


def build_model(directory: Path) -> str:
    from tests.fixtures.remote_code import make_remote_code_model

    return make_remote_code_model("llada", directory, **MODEL)


def rss_mb() -> float:
    """Current resident set of this process (MB), from /proc."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(model_dir: str, prompt_length: int, batch: int, gen_length: int, steps: int, window: bool) -> dict:
    """One measurement (run in a child process)."""
    import torch

    torch.set_num_threads(1)
    from boe_eval.decoding import DecodeConfig, generate
    from boe_eval.models import load_denoiser
    from boe_eval.samplers import build_sampler

    denoiser = load_denoiser(model_dir)
    generator = torch.Generator().manual_seed(prompt_length)
    prompts = torch.randint(1000, LLADA_VOCAB - 1000, (batch, prompt_length), generator=generator).tolist()
    config = DecodeConfig(gen_length=gen_length, steps=steps, block_length=gen_length, logits_window=window)
    generate(denoiser, prompts, build_sampler("confidence"), config)  # warm-up
    before = rss_mb()
    start = time.perf_counter()
    results = generate(denoiser, prompts, build_sampler("confidence"), config)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
    return {"step_s": seconds / steps, "step_memory_mb": peak - before, "peak_rss_mb": peak,
            "tokens": [r.tokens for r in results]}


def child(args: argparse.Namespace) -> int:
    print(json.dumps(measure(args.model_dir, args.prompt, args.batch, args.gen_length, args.steps, args.window)))
    return 0


def run_child(model_dir: str, prompt: int, batch: int, gen_length: int, steps: int, window: bool) -> dict:
    command = [sys.executable, __file__, "--child", "--model-dir", model_dir, "--prompt", str(prompt), "--batch",
               str(batch), "--gen-length", str(gen_length), "--steps", str(steps)] + (["--window"] if window else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, **CHILD_ENV})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["300x1", "300x4", "1000x1"],
                        help="PROMPTxBATCH: prompt length (tokens) and batch size")
    parser.add_argument("--gen-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "results" / "bench_window"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--prompt", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--window", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp) / "llada_vocab126k")
        for case in args.cases:
            prompt, batch = (int(v) for v in case.split("x"))
            runs = {True: [], False: []}
            for _ in range(args.repeats):
                for window in (True, False):
                    runs[window].append(run_child(model_dir, prompt, batch, args.gen_length, args.steps, window))
            same = all(r["tokens"] == runs[False][0]["tokens"] for r in runs[True] + runs[False])
            med = {w: {k: statistics.median(r[k] for r in runs[w]) for k in ("step_s", "step_memory_mb")} for w in runs}
            share = args.gen_length / (prompt + args.gen_length)
            rows.append({
                "prompt": prompt, "batch": batch, "gen_length": args.gen_length, "generation_share": round(share, 3),
                "memory_whole_mb": round(med[False]["step_memory_mb"], 1),
                "memory_window_mb": round(med[True]["step_memory_mb"], 1),
                "memory_ratio": round(med[True]["step_memory_mb"] / med[False]["step_memory_mb"], 3),
                "step_whole_s": round(med[False]["step_s"], 4), "step_window_s": round(med[True]["step_s"], 4),
                "time_ratio": round(med[True]["step_s"] / med[False]["step_s"], 3), "same_tokens": same,
            })
            print(rows[-1], flush=True)
    report = {
        "command": "python scripts/bench_window.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}, 1 torch thread",
        "model": MODEL, "sampler": "confidence, T = 0, one block", "steps": args.steps, "repeats": args.repeats,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_window.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "README.md").write_text(render(report))
    print(render(report))
    return 0


def render(report: dict) -> str:
    columns = list(report["rows"][0])
    lines = [
        "# Step window: memory and step time (issue 19 item 6)",
        "",
        f"Command: `{report['command'].strip()}`  ",
        f"Machine: {report['machine']}  ",
        f"Model: random LLaDA architecture {report['model']} (stand-in remote code, real loader); "
        f"{report['sampler']}; {report['steps']} steps; medians of {report['repeats']} alternating runs.",
        "",
        "step memory = peak resident set during one decode minus the resident set before it (MB); whole = the "
        "whole canvas (`logits_window=False`), window = the default. memory_ratio = window / whole, to compare with "
        "generation_share = gen_length / (prompt + gen_length). same_tokens: both sides wrote the same tokens.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in report["rows"]:
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
