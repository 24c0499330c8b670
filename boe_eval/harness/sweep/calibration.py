"""The wall-time budget axis: seconds per forward-equivalent, measured once per results folder."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boe_eval.harness.schema import JobSpec

CALIBRATION_FILE = "calibration.json"


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Calibration file, written atomically (temporary file removed on every error path)."""
    from boe_eval.store import write_text_atomic

    write_text_atomic(path, json.dumps(payload, indent=2))


def calibrate_seconds_per_forward(denoiser: Any, batch_size: int, width: int, repeats: int = 5) -> float:
    """Median seconds of one denoiser forward per sequence on a [batch_size, width] canvas (after one
    warm-up call), the wall-time axis' conversion to forward-equivalents."""
    import statistics

    import torch

    ids = torch.full((batch_size, width), denoiser.mask_id, dtype=torch.long, device=denoiser.device)
    mask = torch.ones_like(ids)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            denoiser.logits(ids, attention_mask=mask)
            if i:
                times.append((time.perf_counter() - start) / batch_size)
    return statistics.median(times)


def load_or_calibrate(results_dir: Path, job: JobSpec, load: Callable[[], Any]) -> float:
    """Seconds per forward-equivalent, measured once per results folder and reused on every rerun (so
    a restarted wall-time sweep derives the same cells)."""
    path = results_dir / CALIBRATION_FILE
    model_path = job.model.path
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("model_path") == model_path:
            return float(saved["seconds_per_forward"])
    width = job.gen_length + int((job.sweep or {}).get("calibration_prompt_tokens") or 64)
    seconds = calibrate_seconds_per_forward(load(), job.batch_size, width)
    _write_json_atomic(path, {"model_path": model_path, "seconds_per_forward": seconds, "batch_size": job.batch_size,
                              "canvas_width": width, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return seconds


