"""scripts/device_check.py (issue 19): the --smoke run completes on CPU and its JSON holds the expected, sane
figures; bad input stops with exit code 2 before any model is built."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _device_check():
    spec = importlib.util.spec_from_file_location("device_check", ROOT / "scripts" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _llada_parameters(d: int, layers: int, mlp: int, vocab: int) -> int:
    """LLaDA block by hand: q, k, v, out (4 d^2), SwiGLU ff_proj, up_proj, ff_out (3 d mlp), two RMSNorm weights;
    input embedding and untied output head (2 V d); the final RMSNorm."""
    return layers * (4 * d * d + 3 * d * mlp + 2 * d) + 2 * vocab * d + d


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_check")
    module = _device_check()
    assert module.main(["--out", str(out), "--smoke", "--device", "cpu"]) == 0
    return module, json.loads((out / "device_check.json").read_text()), out


def test_smoke_run_writes_report_with_expected_fields(smoke_report):
    module, report, out = smoke_report
    sizes = module.SMOKE
    assert (out / "device_check.md").read_text().startswith("# Device check")
    assert report["smoke"] is True and report["device"] == "cpu" and report["dtype"] == "bfloat16"
    config = sizes["model"]
    assert report["model"]["parameters"] == _llada_parameters(
        config["d_model"], config["n_layers"], config["mlp_hidden_size"], config["vocab_size"]
    )
    assert "no KV cache" in report["kv_cache"]
    assert [row["batch"] for row in report["throughput"]] == sizes["batch_sizes"]
    layout = sizes["throughput_layout"]
    for row in report["throughput"]:
        for key in ("harness_s", "bare_s"):
            assert 0 < row[key] < 60
        generated = row["batch"] * layout["gen_length"]
        assert math.isclose(row["harness_tokens_per_s"], generated / row["harness_s"])
        assert math.isclose(row["bare_tokens_per_s"], generated / row["bare_s"])
        assert math.isclose(row["harness_over_bare"], row["harness_s"] / row["bare_s"])
        # the harness and the bare LLaDA loop decode the same tokens on the same model (bf16)
        assert row["tokens_identical"] is True
        assert row["peak_memory_mib"] is None  # device memory is measured on CUDA only
    expected = [(length, variant) for length in sizes["lengths"] for variant in module.STEP_VARIANTS]
    assert [(row["L"], row["variant"]) for row in report["steps"]] == expected
    for length in sizes["lengths"]:
        rows = {row["variant"]: row for row in report["steps"] if row["L"] == length}
        confidence = rows["confidence"]["step_s"]
        assert rows["confidence"]["vs_confidence"] == 1.0
        for row in rows.values():
            assert 0 < row["step_s"] < 60
            assert math.isclose(row["vs_confidence"], row["step_s"] / confidence)
    assert 0 < report["wall_s"] < 600


def test_bad_dtype_and_device_exit_2_before_building(tmp_path, capsys):
    module = _device_check()
    assert module.main(["--out", str(tmp_path), "--smoke", "--dtype", "float8"]) == 2
    assert "--dtype 'float8' is unknown" in capsys.readouterr().err
    assert module.main(["--out", str(tmp_path), "--smoke", "--device", "nonsense"]) == 2
    assert "--device 'nonsense'" in capsys.readouterr().err
    assert not (tmp_path / "device_check.json").exists()


def test_shell_entry_point_needs_an_output_directory():
    result = subprocess.run(["bash", str(ROOT / "scripts" / "device_check.sh")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage: bash scripts/device_check.sh OUT_DIR" in result.stderr
