"""Time from `boe-eval <args>` (default: `sampler=confidence limit=1`) to its first decoding forward, split.

Runs the real command in this process and times its pieces by wrapping them (nothing else changes):

  imports     importing the CLI and what the job imports before its first forward (torch, transformers and
              its lazily imported auto classes, lm-eval, the models), done up front so that the other
              phases hold no import time
  task index  every construction of lm-eval's TaskManager (it indexes task YAMLs), pre-flight and job
  model load  `load_denoiser` (from_pretrained, the sanity check and the padding probe)
  config      the rest before the job's first metered forward: Hydra composition, pre-flight validation,
              lm-eval building the task and its requests

and prints one JSON line; the process exits at the first forward. Each phase is a wall-clock sum over the
calls (`<phase>_s`) and the process's CPU time in it (`<phase>_cpu_s`), so on a loaded machine compare runs made
side by side. `cpu_s` is the process's CPU time (user + system) to the first forward: the start-up runs on one
thread, so it is about what the wall time would be on an idle machine. `STARTUP_LABEL` names the run in the
output. The script runs the checkout that `boe_eval` imports from: `PYTHONPATH=<another checkout>` measures that
one (an older checkout without `trim_transformers_start_up` gets the scikit-learn skip it had).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/startup_time.py [boe-eval overrides ...]
"""

from __future__ import annotations

import json
import os
import sys
import time

START = time.perf_counter()
PHASES = {"imports": 0.0, "task index": 0.0, "model load": 0.0}
PHASES_CPU = {"imports": 0.0, "task index": 0.0, "model load": 0.0}
COUNTS = {"task index": 0, "model load": 0}


def _timed(phase: str, function):
    def wrapper(*args, **kwargs):
        begin, begin_cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            PHASES[phase] += time.perf_counter() - begin
            PHASES_CPU[phase] += time.process_time() - begin_cpu
            COUNTS[phase] += 1

    return wrapper


def _report_and_exit(*args, **kwargs) -> None:
    total = time.perf_counter() - START
    phases = {name: round(seconds, 2) for name, seconds in PHASES.items()}
    phases["config"] = round(total - sum(PHASES.values()), 2)
    cpu = time.process_time()
    phases_cpu = {name: round(seconds, 2) for name, seconds in PHASES_CPU.items()}
    phases_cpu["config"] = round(cpu - sum(PHASES_CPU.values()), 2)
    print(json.dumps({"version": os.environ.get("STARTUP_LABEL", "current"), "boe_eval": os.path.dirname(cli.__file__),
                      "command": "boe-eval " + " ".join(ARGS), "to_first_forward_s": round(total, 2),
                      "cpu_s": round(cpu, 2),
                      **{f"{k}_s": v for k, v in phases.items()},
                      **{f"{k}_cpu_s": v for k, v in phases_cpu.items()},
                      "task_manager_builds": COUNTS["task index"]}), flush=True)
    os._exit(0)


ARGS = sys.argv[1:] or ["sampler=confidence", "limit=1"]

try:  # what `boe-eval` (cli.main) does first, where the code measured has it
    from boe_eval.import_cost import pause_gc_for_start_up
except ImportError:
    pass
else:
    pause_gc_for_start_up()

# --- imports
import boe_eval.harness.cli as cli  # noqa: E402

try:  # what `boe-eval` (cli.main) does first, where the code measured has it
    from boe_eval.import_cost import trim_transformers_start_up as _trim
except ImportError:
    try:
        from boe_eval.import_cost import skip_sklearn_in_transformers as _trim
    except ImportError:
        _trim = None
if _trim is not None:
    _trim()
import lm_eval  # noqa: E402,F401
import lm_eval.tasks  # noqa: E402
import torch  # noqa: E402,F401
import transformers  # noqa: E402,F401
from transformers import AutoModelForMaskedLM, AutoTokenizer  # noqa: E402,F401  (lazy: modeling and generation utilities)

import boe_eval.decoding.meter as meter  # noqa: E402
import boe_eval.harness.evaluate  # noqa: E402,F401
import boe_eval.models.loading as loading  # noqa: E402

PHASES["imports"] = time.perf_counter() - START
PHASES_CPU["imports"] = time.process_time()

# --- wrap the phases
from lm_eval.tasks import manager as task_manager_module  # noqa: E402

_original_init = task_manager_module.TaskManager.__init__
task_manager_module.TaskManager.__init__ = _timed("task index", _original_init)
loading.load_denoiser = _timed("model load", loading.load_denoiser)
meter.MeteredDenoiser.forward = _report_and_exit

sys.argv = ["boe-eval", *ARGS, "plot=false", f"output_dir={os.environ.get('TMPDIR', '/tmp')}/startup_time_{os.getpid()}"]
cli.main()
print("the job ended without a forward", file=sys.stderr)
sys.exit(1)
