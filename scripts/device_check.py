"""Accelerator check (issue 19): decoding throughput, BoE vs confidence step time and peak memory of a random
~1B-parameter LLaDA-architecture model in bfloat16, built from a config (no download).

The model is the project's LLaDA stand-in remote code (tests/fixtures/remote_code/llada: LLaDA's class names,
module paths and forward; a bidirectional Llama-style block with RoPE and SwiGLU; LLaDA's vocabulary of 126,464),
instantiated in memory on the device with random weights and wrapped in `LLaDADenoiser`, the wrapper the harness
uses for real LLaDA checkpoints. Full size: d_model 2048, 12 layers, 16 heads, MLP 5632 = 1.13 B parameters
(0.62 B in the blocks, 0.52 B in the untied input embedding and output head).

It measures, each with the device synchronised around the timed call:
- decoding throughput (generated tokens / s) at batch 1, 8, 32: `generate_batched` with the confidence sampler,
  next to the bare LLaDA loop of scripts/bench_throughput.py on the same model and prompts (and whether both wrote
  the same tokens);
- one decoding step at canvas L = 256, 512, 1024 (prompt L/2, L/2 masked slots, one step through `generate`) for
  confidence, BoE with a dense backward (no ActiveQueryAttention), BoE with faithful AQA and BoE with efficient
  AQA (the default), as seconds and as a ratio to the confidence step, with the peak device memory of each;
- KV-cache savings: not measured, the harness has no KV cache yet (recorded as such).

    bash scripts/device_check.sh results/device_check           # on a GPU: about 2-5 minutes
    bash scripts/device_check.sh /tmp/device_smoke --smoke      # on CPU: tiny sizes, seconds

Prints a table and writes <out>/device_check.json and <out>/device_check.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402

FULL = {
    "model": {"d_model": 2048, "n_heads": 16, "n_layers": 12, "mlp_hidden_size": 5632, "vocab_size": 126464,
              "init_std": 0.02},
    "batch_sizes": [1, 8, 32],
    "throughput_layout": {"prompt_length": 128, "gen_length": 128, "steps": 64, "block_length": 32},
    "lengths": [256, 512, 1024],
    "repeats": 3,
}
SMOKE = {
    # larger init than a real model's so that a tiny random model's confidences are far from ties
    "model": {"d_model": 32, "n_heads": 2, "n_layers": 2, "mlp_hidden_size": 64, "vocab_size": 512, "init_std": 0.15},
    "batch_sizes": [1, 2],
    "throughput_layout": {"prompt_length": 8, "gen_length": 8, "steps": 4, "block_length": 4},
    "lengths": [16, 32],
    "repeats": 1,
}
STEP_VARIANTS = {
    "confidence": None,
    "BoE dense (no AQA)": {"aqa": False},
    "BoE faithful AQA": {"aqa_mode": "faithful"},
    "BoE efficient AQA": {"aqa_mode": "efficient"},
}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def build_llada(model_config: dict, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A random LLaDA-architecture model (the project's stand-in remote code) behind `LLaDADenoiser`."""
    from boe_eval.models.llada import LLaDADenoiser, llada_mask_id, llada_suppressed_ids
    from tests.fixtures.remote_code import stand_in_tokenizer
    from tests.fixtures.remote_code.llada.configuration_llada import LLaDAConfig
    from tests.fixtures.remote_code.llada.modeling_llada import LLaDAModelLM

    tokenizer = stand_in_tokenizer("llada")
    config = LLaDAConfig(**model_config, max_sequence_length=4096,
                         mask_token_id=tokenizer.convert_tokens_to_ids("<|mdm_mask|>"),
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    from boe_eval.models.compat import compatible_model_class, remote_code_compat

    with remote_code_compat(), torch.device(device):
        model = compatible_model_class(LLaDAModelLM)(config)
    # like the hub code, the stand-in leaves initialisation to the checkpoint: draw the weights here, on the device
    # (embeddings N(0, 1), linear layers N(0, init_std), norms ones)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if parameter.dim() == 1:
                parameter.fill_(1.0)
            else:
                std = 1.0 if name.endswith("wte.weight") else config.init_std
                parameter.normal_(0.0, std, generator=generator)
    model = model.to(dtype).eval()
    return LLaDADenoiser(model, tokenizer, mask_id=llada_mask_id(config, tokenizer, model_config["vocab_size"]),
                         suppress_ids=llada_suppressed_ids(tokenizer), forbidden_ids=(),
                         honours_padding_mask=False, name="random-llada-stand-in")


class DeviceClock:
    """Wall time with the device synchronised before and after; peak device memory since `reset`."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None

    def time(self, function) -> float:
        self.sync()
        start = time.perf_counter()
        function()
        self.sync()
        return time.perf_counter() - start


def random_prompts(vocab: int, count: int, length: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, min(vocab, 100), (count, length), generator=generator).tolist()


def measure_throughput(denoiser, clock: DeviceClock, batch_sizes: list[int], layout: dict, repeats: int) -> list[dict]:
    from bench_throughput import bare_low_confidence

    from boe_eval.decoding import DecodeConfig, generate_batched
    from boe_eval.samplers import build_sampler

    config = DecodeConfig(gen_length=layout["gen_length"], steps=layout["steps"], block_length=layout["block_length"])
    prompts = random_prompts(denoiser.vocab_size, max(batch_sizes), layout["prompt_length"], seed=1)

    def harness(batch):
        out = generate_batched(denoiser, batch, build_sampler("confidence"), config, list(range(len(batch))),
                               batch_size=len(batch), progress=False)
        tokens.append(torch.tensor([r.tokens for r in out]))

    def bare(batch):
        ids = torch.tensor(batch, device=denoiser.device)
        tokens.append(bare_low_confidence(lambda x: denoiser.logits(x), ids, denoiser.mask_id, layout["gen_length"],
                                          layout["steps"], layout["block_length"], denoiser.forbidden_ids).cpu())

    tokens: list[torch.Tensor] = []

    harness(prompts[:1]), bare(prompts[:1])  # warm-up
    rows = []
    for b in batch_sizes:
        batch = prompts[:b]
        clock.reset()
        t_harness, t_bare, identical = [], [], True
        for _ in range(repeats):
            tokens.clear()
            t_harness.append(clock.time(lambda: harness(batch)))
            t_bare.append(clock.time(lambda: bare(batch)))
            identical &= torch.equal(tokens[0], tokens[1])
        generated = b * layout["gen_length"]
        row = {"batch": b, "harness_s": statistics.median(t_harness), "bare_s": statistics.median(t_bare)}
        row.update(harness_tokens_per_s=generated / row["harness_s"], bare_tokens_per_s=generated / row["bare_s"],
                   harness_over_bare=row["harness_s"] / row["bare_s"], tokens_identical=identical,
                   peak_memory_mib=clock.peak_mib())
        rows.append(row)
        print(f"[throughput] b={b:3d} harness {row['harness_tokens_per_s']:9.1f} tok/s  bare "
              f"{row['bare_tokens_per_s']:9.1f} tok/s  ratio {row['harness_over_bare']:.3f}  identical {identical}",
              flush=True)
    return rows


def measure_steps(denoiser, clock: DeviceClock, lengths: list[int], repeats: int) -> list[dict]:
    from boe_eval.decoding import DecodeConfig, generate
    from boe_eval.samplers import build_sampler

    def step(prompt, gen_length, params):
        sampler = build_sampler("confidence") if params is None else build_sampler("boe", **params)
        generate(denoiser, [prompt], sampler, DecodeConfig(gen_length=gen_length, steps=1))

    rows = []
    for length in lengths:
        prompt = random_prompts(denoiser.vocab_size, 1, length // 2, seed=length)[0]
        gen_length = length - len(prompt)
        confidence = None
        for label, params in STEP_VARIANTS.items():
            step(prompt, gen_length, params)  # warm-up
            clock.reset()
            seconds = statistics.median(clock.time(lambda: step(prompt, gen_length, params)) for _ in range(repeats))
            confidence = seconds if params is None else confidence
            row = {"L": length, "variant": label, "step_s": seconds, "vs_confidence": seconds / confidence,
                   "peak_memory_mib": clock.peak_mib()}
            rows.append(row)
            memory = "" if row["peak_memory_mib"] is None else f"  peak {row['peak_memory_mib']:9.1f} MiB"
            print(f"[step] L={length:5d} {label:20s} {seconds * 1e3:9.2f} ms  x{row['vs_confidence']:.2f}{memory}",
                  flush=True)
    return rows


def render(report: dict) -> str:
    import pandas as pd

    title = "# Device check: random ~1B LLaDA-architecture model" + (" (SMOKE: tiny sizes)" if report["smoke"] else "")
    lines = [title,
             "", f"command: `{report['command']}`  ", f"device: {report['device_name']} ({report['device']}), dtype "
             f"{report['dtype']}, torch {report['torch']}  ",
             f"model: {report['model']['config']}, {report['model']['parameters'] / 1e6:.1f} M parameters  ",
             f"KV cache: {report['kv_cache']}", "",
             "## Decoding throughput (confidence; generated tokens / s)", "",
             f"layout: {report['throughput_layout']}", "",
             pd.DataFrame(report["throughput"]).to_markdown(index=False, floatfmt=".3f"), "",
             "## One decoding step: BoE vs confidence (prompt L/2, L/2 masked slots, batch 1)", "",
             pd.DataFrame(report["steps"]).to_markdown(index=False, floatfmt=".4f"), "",
             f"total wall time: {report['wall_s']:.1f} s", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for device_check.json and device_check.md")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: runs in seconds on CPU")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", default="bfloat16", help=f"one of {', '.join(DTYPES)}")
    args = parser.parse_args(argv)
    if args.dtype not in DTYPES:
        print(f"--dtype {args.dtype!r} is unknown: choose one of {', '.join(DTYPES)}", file=sys.stderr)
        return 2
    device_name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device_name)
    except RuntimeError:
        print(f"--device {device_name!r} is not a torch device: use cuda, cpu, cuda:1, ...", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {device_name!r} asked for, but this torch ({torch.__version__}) sees no CUDA device: "
              "use a CUDA build of torch, or --device cpu --smoke", file=sys.stderr)
        return 2
    if device.type == "cpu" and not args.smoke:
        print("warning: the full-size check on CPU takes far longer than 10 minutes; use --smoke on CPU",
              file=sys.stderr, flush=True)
    sizes = SMOKE if args.smoke else FULL
    start = time.perf_counter()
    dtype = DTYPES[args.dtype]
    denoiser = build_llada(sizes["model"], device, dtype)
    clock = DeviceClock(device)
    report = {
        "command": "python scripts/device_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "smoke": args.smoke,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU",
        "dtype": args.dtype,
        "torch": torch.__version__,
        "model": {"config": sizes["model"], "parameters": sum(p.numel() for p in denoiser.model.parameters()),
                  "architecture": "LLaDA stand-in remote code (tests/fixtures/remote_code/llada), random weights"},
        "kv_cache": "not measured: the harness has no KV cache yet",
        "throughput_layout": sizes["throughput_layout"],
    }
    print(f"model: {report['model']['parameters'] / 1e6:.1f} M parameters on {report['device_name']} "
          f"({args.dtype})", flush=True)
    report["throughput"] = measure_throughput(denoiser, clock, sizes["batch_sizes"], sizes["throughput_layout"],
                                              sizes["repeats"])
    report["steps"] = measure_steps(denoiser, clock, sizes["lengths"], sizes["repeats"])
    report["wall_s"] = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.json").write_text(json.dumps(report, indent=2))
    text = render(report)
    (out / "device_check.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
