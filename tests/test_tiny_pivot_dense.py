"""The built-in dense pivot task (boe_eval.tiny.pivot_dense): generator properties, held-out split, the
template against an independent construction, the metric on hand cases, the task config's layout, and
resuming its training bit-exactly through the training script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boe_eval.models.compat import transformers_major
from boe_eval.tiny import pivot_dense
from boe_eval.tiny.registry import get_tiny_task
from boe_eval.tiny.training import STATE_FILE

REPO = Path(__file__).resolve().parents[1]


def committed() -> list[dict]:
    path = REPO / "tasks" / "tiny_pivot_dense" / "data" / "test.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_items_are_two_strings_differing_at_about_half_of_the_places():
    docs = committed()
    differing, places = 0, 0
    for d in docs:
        a, b = d["a"], d["b"]
        assert len(a) == len(b) == pivot_dense.LENGTH == 46 and d["choice"] in ("A", "B")
        assert a.isdigit() and b.isdigit()
        diffs = [i for i in range(46) if a[i] != b[i]]
        assert len(diffs) >= pivot_dense.MIN_DIFFS and len(diffs) % 2 == 1 and diffs == pivot_dense.differing(d)
        assert all(a[i] in "01234" and int(b[i]) == int(a[i]) + 5 for i in diffs)
        differing, places = differing + len(diffs), places + 46
        # independent construction of the template: shared digit, or "abcde"[A's digit] where they differ
        template = "".join(a[i] if a[i] == b[i] else chr(ord("a") + int(a[i])) for i in range(46))
        assert pivot_dense.prompt(d) == template + "="
        assert pivot_dense.answer(d) == d["choice"] + (a if d["choice"] == "A" else b)
        assert len(pivot_dense.answer(d)) == pivot_dense.GEN_LENGTH - 1 == 47
    assert 0.47 < differing / places < 0.52
    shared = [x for d in docs for x, y in zip(d["a"], d["b"]) if x == y]
    assert set(shared) == set("0123456789") and all(0.08 < shared.count(c) / len(shared) < 0.12 for c in "0123456789")
    assert 0.45 < sum(d["choice"] == "A" for d in docs) / len(docs) < 0.55


def test_metric_on_hand_cases():
    a = "0123456789" * 4 + "012345"
    b = "5" + a[1:3] + "8" + a[4:]  # differs at places 0 (0 -> 5) and 3 (3 -> 8)
    doc = {"a": a, "b": b, "choice": "A"}
    assert pivot_dense.prompt(doc) == "a12d" + a[4:] + "="
    assert pivot_dense.score("A" + a, doc) == {"valid": 1.0, "consistent": 1.0, "majority": 1.0}
    assert pivot_dense.score("B" + b + "\n", doc) == {"valid": 1.0, "consistent": 1.0, "majority": 1.0}
    # the letter names B but the digits are A's: both differing places disagree with B
    assert pivot_dense.score("B" + a, doc) == {"valid": 0.0, "consistent": 0.0, "majority": 1.0}
    # an even mix: place 0 from A, place 3 from B
    mixed = "A" + a[:3] + "8" + a[4:]
    assert pivot_dense.score(mixed, doc) == {"valid": 0.0, "consistent": 0.5, "majority": 0.5}
    # a wrong shared digit: not valid, the differing places still all A's
    assert pivot_dense.score("A" + a[:5] + "9" + a[6:], doc) == {"valid": 0.0, "consistent": 1.0, "majority": 1.0}
    assert pivot_dense.score("C" + a, doc) == {"valid": 0.0, "consistent": 0.0, "majority": 1.0}
    assert pivot_dense.score("", doc) == {"valid": 0.0, "consistent": 0.0, "majority": 0.0}
    assert pivot_dense.score("A" + a[:-1], doc)["valid"] == 0.0


def test_layout_is_the_task_configs():
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "configs" / "task" / "tiny_pivot_dense.yaml")
    task = get_tiny_task("tiny_pivot_dense")
    assert task.gen_length == cfg.gen_length == pivot_dense.GEN_LENGTH == 48
    assert task.steps == cfg.steps == 8 and task.layout().block_length == cfg.block_length == 48
    assert cfg.temperature == 1.0  # sampled: greedy decoding breaks every 50/50 tie the same way
    assert "max_gen_toks: 48" in (REPO / "tasks" / "tiny_pivot_dense" / "tiny_pivot_dense.yaml").read_text()


def _run(out: Path, *extra: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train_tiny.py"), "pivot_dense", "--steps", "200",
                           "--batch-size", "2", "--out", str(out), *extra], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_training_script_resumes_bit_exactly(tmp_path):
    """The task's own model and optimiser through `scripts/train_tiny.py` (200 steps of batch 2, evaluated
    every 100): one run vs `--stop-at 100` then `--resume` end with the same weights, optimiser state and
    history, as the shipped two-chunk training relies on."""
    whole, chunks = tmp_path / "whole", tmp_path / "chunks"
    _run(whole)
    _run(chunks, "--stop-at", "100")
    assert torch.load(chunks / STATE_FILE, weights_only=False)["step"] == 100
    _run(chunks, "--resume")
    a = torch.load(whole / STATE_FILE, weights_only=False)
    b = torch.load(chunks / STATE_FILE, weights_only=False)
    assert a["step"] == b["step"] == 200
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimiser"]["state"].values(), b["optimiser"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [(h["step"], h["loss"], h["val_loss"]) for h in a["history"]] == \
        [(h["step"], h["loss"], h["val_loss"]) for h in b["history"]]


@pytest.mark.skipif(transformers_major() >= 5, reason="transformers 5 does not build BERT's relative positions: the "
                    "loader refuses such a model (tests/test_models.py)")
def test_a_bert_with_relative_positions_is_not_offered_position_ids(tmp_path):
    """The model's relative position encoding ignores `position_ids`, so the samplers that place columns at
    other positions (WINO's shadow block, the KV cache's part forwards) are refused on it; absolute: offered."""
    from dataclasses import replace

    from boe_eval.errors import ConfigError
    from boe_eval.harness.specs import check_sampler_fits_model
    from boe_eval.models import load_denoiser
    from boe_eval.samplers import build_sampler
    from boe_eval.tiny.tokenizer import build_char_tokenizer
    from boe_eval.tiny.training import TrainConfig, build_model

    tok = build_char_tokenizer()
    for kind in ("absolute", "relative_key"):
        config = replace(TrainConfig(), hidden_size=16, layers=1, heads=2, position_embedding_type=kind)
        build_model(tok, config).save_pretrained(tmp_path / kind)
        tok.save_pretrained(tmp_path / kind)
        denoiser = load_denoiser(str(tmp_path / kind))
        assert denoiser.model.config.position_embedding_type == kind
        assert denoiser.supports_4d_mask is (kind == "absolute") and denoiser.supports_kv_cache is (kind == "absolute")
    check_sampler_fits_model(build_sampler("wino"), str(tmp_path / "absolute"))
    with pytest.raises(ConfigError, match="relative positions"):
        check_sampler_fits_model(build_sampler("wino"), str(tmp_path / "relative_key"))


def test_the_task_config_sets_the_default_temperature_and_an_override_wins():
    from hydra import compose, initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR
    from boe_eval.harness.schema import validate_job

    def job(*overrides: str):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return validate_job(compose(config_name="config", overrides=["sampler=confidence", *overrides]))

    assert job("model=tiny_pivot_dense", "task=tiny_pivot_dense").temperature == 1.0
    assert job("model=tiny_pivot_dense", "task=tiny_pivot_dense", "temperature=0").temperature == 0.0
    assert job("model=tiny_chain", "task=tiny_chain").temperature == 0.0  # tasks that set none stay greedy


def test_efficient_active_query_attention_is_refused_before_loading_and_faithful_runs():
    """The shipped model uses relative positions (BERT's own attention, not torch's SDPA kernel): BoE's default
    efficient AQA cannot intercept it, so the pre-flight refuses it in one line naming the fix; the faithful mode
    (eq. 30 as written) passes, and so does BoE with efficient AQA on an absolute-position model."""
    from boe_eval.errors import ConfigError
    from boe_eval.harness.specs import check_sampler_fits_model
    from boe_eval.samplers import build_sampler

    with pytest.raises(ConfigError) as err:
        check_sampler_fits_model(build_sampler("boe"), "builtin:tiny_pivot_dense")
    text = str(err.value)
    assert "\n" not in text and "'relative_key'" in text and "sampler.params.aqa_mode=faithful" in text
    check_sampler_fits_model(build_sampler("boe", aqa_mode="faithful"), "builtin:tiny_pivot_dense")
    check_sampler_fits_model(build_sampler("boe", aqa=False), "builtin:tiny_pivot_dense")
    check_sampler_fits_model(build_sampler("boe", signal="random"), "builtin:tiny_pivot_dense")  # no backward
    with pytest.raises(ConfigError, match="aqa_mode=faithful"):
        check_sampler_fits_model(build_sampler("boe", signal="negated"), "builtin:tiny_pivot_dense")
    check_sampler_fits_model(build_sampler("boe"), "builtin:tiny_chain")


def test_the_nfe_sweep_is_compute_matched_at_the_tasks_temperature_and_every_cell_passes_the_pre_flight():
    """configs/sweep/tiny_pivot_dense_nfe.yaml: every budgeted cell plans its budget within one step's cost, runs
    at the task's temperature, and BoE's cells use the faithful AQA this model needs (the pre-flight refuses the
    efficient one), so the committed sweep can be rerun as it stands."""
    from hydra import compose, initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR
    from boe_eval.harness.specs import check_sampler_fits_model
    from boe_eval.harness.sweep import plan_sweep
    from boe_eval.samplers import build_sampler

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["sweep=tiny_pivot_dense_nfe", "output_dir=/tmp/unused"])
    cells = plan_sweep(cfg)
    assert {c.budget for c in cells if c.budget is not None} == {8, 12, 16, 24}
    for c in cells:
        assert c.spec.temperature == 1.0 and c.spec.gen_length == 48
        if c.budget is not None:
            assert abs(c.assignment.planned_cost - c.budget) <= c.assignment.step_cost
        check_sampler_fits_model(build_sampler(c.entry.name, **c.spec.sampler_params), "builtin:tiny_pivot_dense")
    assert {c.spec.steps for c in cells if c.entry.name == "boe"} == {4, 6, 8, 12}
