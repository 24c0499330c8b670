"""What the `boe` model hands to lm-eval and what lm-eval logs: the d1 tasks' full-canvas response
(every generated token decoded, special tokens kept, as d1's eval.py), and each logged sample's
compute (`--log_samples` of `boe-lm-eval` and `log_samples=true` of `boe-eval`)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from boe_eval.decoding import DecodeConfig, generate_batched
from boe_eval.samplers import build_sampler

TOY_TASKS = str(Path(__file__).parent / "lm_tasks")
TEST_CONFIGS = Path(__file__).parent / "configs"


def _instance(context: str, gen_kwargs: dict):
    from lm_eval.api.instance import Instance

    return Instance("generate_until", {}, (context, gen_kwargs), 0)


def test_full_canvas_response_is_every_generated_token_with_its_special_tokens(tiny_bert):
    from boe_eval.harness.lm_adapter import BoeLM, request_seed

    lm = BoeLM(denoiser=tiny_bert, sampler="confidence", gen_length=16, steps=16, temperature=1.0, seed=3, progress=False)
    prompt = tiny_bert.tokenizer("copy:ab=").input_ids
    (direct,) = generate_batched(tiny_bert, [prompt], build_sampler("confidence"),
                                 DecodeConfig(gen_length=16, steps=16, temperature=1.0), [request_seed(3, None, None, 0)],
                                 progress=False)
    assert tiny_bert.mask_id not in direct.tokens
    # d1: tokenizer.batch_decode(out[:, -gen_length:], skip_special_tokens=False)
    expected = tiny_bert.tokenizer.batch_decode([direct.tokens], skip_special_tokens=False)[0]
    full = lm.generate_until([_instance("copy:ab=", {"until": [], "max_gen_toks": 512, "full_canvas": True})])[0]
    assert full == expected
    default = lm.generate_until([_instance("copy:ab=", {"until": [], "max_gen_toks": 512})])[0]
    assert default == direct.text  # up to EOS, special tokens skipped
    # max_gen_toks still bounds the canvas
    short = lm.generate_until([_instance("copy:ab=", {"until": [], "max_gen_toks": 5, "full_canvas": True})])[0]
    assert short == tiny_bert.tokenizer.batch_decode([direct.tokens[:5]], skip_special_tokens=False)[0]


def test_full_canvas_keeps_text_after_eos_and_drops_only_masked_slots(tiny_bert):
    import dataclasses

    from boe_eval.harness.lm_adapter import BoeLM

    lm = BoeLM(denoiser=tiny_bert, sampler="confidence", gen_length=8, steps=8, progress=False)
    tok = tiny_bert.tokenizer
    a, b = tok.convert_tokens_to_ids(["a", "b"])
    eos, mask = tiny_bert.eos_id, tiny_bert.mask_id
    (res,) = generate_batched(tiny_bert, [tok("copy:ab=").input_ids], build_sampler("confidence"),
                              DecodeConfig(gen_length=8, steps=8), [0], progress=False)
    # a canvas in which the model wrote EOS, then more text (LLaDA does this), one slot left masked
    res = dataclasses.replace(res, tokens=[a, eos, b, mask, a, eos, eos, eos])
    full = lm.response_text(res, {"until": [], "max_gen_toks": 512, "full_canvas": True}, DecodeConfig(gen_length=8, steps=8))
    eos_text = tok.convert_ids_to_tokens(eos)
    assert full == f"a{eos_text}ba{eos_text}{eos_text}{eos_text}"  # this tokenizer joins tokens without spaces
    cut = lm.response_text(res, {"until": [], "max_gen_toks": 4}, DecodeConfig(gen_length=8, steps=8))
    assert cut == "a"  # the default reading stops at EOS


@pytest.mark.slow  # lm-eval indexes its task registry (~40 s on a busy 2-core box)
def test_simple_evaluate_samples_carry_each_generations_compute(tiny_bert_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from boe_eval.harness.lm_adapter import models_created, with_compute_in_samples

    run = with_compute_in_samples(lm_eval.simple_evaluate)
    with models_created() as created:
        out = run(model="boe", model_args=f"pretrained={tiny_bert_dir},sampler=margin,steps=4,progress=false",
                  tasks=["toy_copy"], task_manager=TaskManager(include_path=TOY_TASKS), limit=3, log_samples=True,
                  bootstrap_iters=0)
    (lm,) = created  # lm-eval built the model from its name
    samples = out["samples"]["toy_copy"]
    assert len(samples) == 3
    for sample in samples:
        compute = sample["compute"]
        record = lm.records[("toy_copy", sample["doc_id"])]
        # margin is one forward per step: the toy task's 8-token canvas in 4 steps costs 4 NFE
        assert (compute["nfe"], compute["forwards"], compute["backwards"], compute["forward_equivalents"]) == (4, 4, 0, 4.0)
        assert compute["tokens_processed"] == record["tokens_processed"] > 0
        assert compute["wall_time_s"] == record["wall_time_s"] > 0
        assert (compute["steps"], compute["gen_length"], compute["sampler"]) == (4, 8, "margin")
        assert "fallbacks" in compute and "sampler_params" in compute


@pytest.mark.slow  # lm-eval indexes its task registry (~35 s on a busy 2-core box)
def test_boe_eval_log_samples_writes_lm_evals_samples_with_compute(tiny_bert_dir, tmp_path):
    from hydra import compose, initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR, run_job
    from boe_eval.store import read_rows

    os.environ["BOE_TEST_TASKS"] = TOY_TASKS
    overrides = [f"hydra.searchpath=[file://{TEST_CONFIGS}]", "model=tiny_random", "task=toy_copy",
                 f"model.path={tiny_bert_dir}", f"output_dir={tmp_path}", "plot=false", "+progress=false",
                 "sampler=confidence", "limit=3", "log_samples=true"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    run_job(cfg)
    (path,) = sorted((tmp_path / "samples").glob("*_toy_copy.jsonl"))
    samples = [json.loads(line) for line in path.open()]
    rows = {r["doc_id"]: r for r in read_rows(tmp_path) if r["row_type"] == "example"}
    assert sorted(s["doc_id"] for s in samples) == sorted(rows) == [0, 1, 2]
    for sample in samples:
        assert sample["compute"]["nfe"] == rows[sample["doc_id"]]["nfe"] == 8
        assert sample["compute"]["forwards"] == rows[sample["doc_id"]]["forwards"]
        assert sample["filtered_resps"] and "exact_match" in sample


@pytest.mark.slow
def test_boe_lm_eval_log_samples_file_shows_nfe_per_sample(tiny_bert_dir, tmp_path):
    exe = str(Path(sys.executable).with_name("boe-lm-eval"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [exe, "--model", "boe", "--model_args", f"pretrained={tiny_bert_dir},sampler=confidence,steps=4,progress=false",
         "--tasks", "toy_copy", "--include_path", TOY_TASKS, "--limit", "3", "--log_samples",
         "--output_path", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = glob.glob(str(tmp_path / "out" / "**" / "samples_toy_copy_*.jsonl"), recursive=True)
    samples = [json.loads(line) for line in open(path)]
    assert len(samples) == 3
    for sample in samples:
        print(path, "doc", sample["doc_id"], {k: sample["compute"][k] for k in ("nfe", "forwards", "backwards", "wall_time_s")})
        assert (sample["compute"]["nfe"], sample["compute"]["forwards"], sample["compute"]["backwards"]) == (4, 4, 0)


def test_d1_tasks_rank_eos_eot_by_confidence_like_d1s_generate(tiny_bert):
    import copy

    from boe_eval.harness.lm_adapter import BoeLM, request_seed

    prompt = tiny_bert.tokenizer("copy:ab=").input_ids
    config = DecodeConfig(gen_length=12, steps=6, temperature=1.0)  # sampling: any change of order shows
    seed = [request_seed(5, None, None, 0)]
    plain = copy.copy(tiny_bert)
    plain.suppress_ids = ()
    (free,) = generate_batched(plain, [prompt], build_sampler("confidence"), config, seed, progress=False)
    # suppress the free run's two most written tokens, like LLaDA's EOS/EoT: they then come last
    suppressing = copy.copy(tiny_bert)
    most = tuple(sorted(set(free.tokens), key=lambda t: (-free.tokens.count(t), t))[:2])
    suppressing.suppress_ids = most
    (ranked_last,) = generate_batched(suppressing, [prompt], build_sampler("confidence"), config, seed, progress=False)
    assert ranked_last.tokens != free.tokens
    lm = BoeLM(denoiser=suppressing, sampler="confidence", gen_length=12, steps=6, temperature=1.0, seed=5, progress=False)
    kwargs = {"until": [], "max_gen_toks": 512, "full_canvas": True}
    as_d1 = lm.generate_until([_instance("copy:ab=", {**kwargs, "suppress_eos_eot": False})])[0]
    assert as_d1 == tiny_bert.tokenizer.batch_decode([free.tokens], skip_special_tokens=False)[0]
    default = lm.generate_until([_instance("copy:ab=", kwargs)])[0]
    assert default == tiny_bert.tokenizer.batch_decode([ranked_last.tokens], skip_special_tokens=False)[0]
    assert suppressing.suppress_ids == most  # restored after the request
