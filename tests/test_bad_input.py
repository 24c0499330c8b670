"""Bad input, clear errors (issue 8): each bad value gives one line naming the field, the value and
what is allowed, exit code 2, before any model is loaded, and no result rows are half-written."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from boe_eval.errors import ConfigError
from boe_eval.harness.schema import check_model_dir, check_sampler_params, preflight, validate_job

TEST_CONFIGS = Path(__file__).parent / "configs"
TOY_TASKS = str(Path(__file__).parent / "lm_tasks")
os.environ.setdefault("BOE_TEST_TASKS", TOY_TASKS)

MISSING_DATA_TASK = """task: toy_missing_data
custom_dataset: !function utils.load
test_split: test
output_type: generate_until
doc_to_text: "copy:{{source}}="
doc_to_target: "{{source}}"
generation_kwargs:
  until: ["."]
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""

MISSING_DATA_UTILS = """from boe_eval.harness.task_data import local_dataset


def load(**kwargs):
    return local_dataset(__file__, {"test": "data/test.jsonl"})
"""


def base(model_dir: str, out: Path) -> list[str]:
    return [f"hydra.searchpath=[file://{TEST_CONFIGS}]", "model=tiny_random", "task=toy_copy",
            f"model.path={model_dir}", f"output_dir={out}", "plot=false", "+progress=false"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from boe_eval.harness.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def check_argv(argv: list[str]) -> int:
    """What `boe-eval <argv>` validates before Hydra runs a job (the console script's preflight)."""
    from boe_eval.harness.cli import CONFIG_DIR, check

    return preflight(argv, CONFIG_DIR, check)


def corrupt_models(model_dir: str, root: Path) -> dict[str, Path]:
    out = {}
    for name in ("no_config", "bad_json", "truncated", "no_weights"):
        out[name] = root / name
        shutil.copytree(model_dir, out[name])
    (out["no_config"] / "config.json").unlink()
    (out["bad_json"] / "config.json").write_text('{"model_type": "bert",')
    weights = out["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    (out["no_weights"] / "model.safetensors").unlink()
    return out


CASES = {
    # override(s) -> a fragment the one-line message must contain (field, value, what is allowed)
    "sampler=nope": "sampler='nope' is unknown: choose one of ",
    "sampler=confidence sampler.name=nope": "sampler='nope' is unknown: choose one of ",
    "task=nope": "task='nope' is unknown: choose one of",
    "task.lm_eval_task=nope_task": "task 'nope_task' is unknown to lm-eval: the project's tasks are",
    "model=nope": "model='nope' is unknown: choose one of",
    "steps=0": "steps=0 is invalid: it must be a positive integer",
    "gen_length=-8 steps=4 block_length=null": "gen_length=-8 is invalid: it must be a positive integer",
    "block_length=3": "block_length=3 does not divide gen_length=8",
    "steps=16": "steps=16 exceeds gen_length=8",
    "gen_length=16 block_length=4 steps=6": "steps=6 is not a multiple of the number of blocks (4",
    "steps=abc": "steps='abc' is invalid: it must be a positive integer",
    "temperature=-0.5": "temperature=-0.5 is invalid: it must be >= 0",
    "limit=0": "limit=0 is invalid: it must be a positive integer (or null for all examples)",
    "batch_size=0": "batch_size=0 is invalid: it must be a positive integer",
    "seed=-1": "seed=-1 is invalid: it must be an integer in [0, 2**32 - 1]",
    "model.dtype=float64": "model.dtype='float64' is invalid: it must be one of float32, float16, bfloat16",
    "model.device=gpu": "model.device='gpu' is invalid: it must be cpu, cuda, cuda:<index> or mps",
    "early_stop=maybe": "early_stop='maybe' is invalid: it must be true or false",
    "task.primary_metric=bleu": "task.primary_metric='bleu' is not reported by task 'toy_copy': it reports exact_match",
    "sampler=confidence +sampler.params.bogus=1": "sampler 'confidence' has no parameter 'bogus': its parameters are none",
    "+sampler.params.rho=0.5": "sampler.params={'rho': 0.5} is invalid with the comparison config 'compare'",
    "stesp=8": "stesp is not a setting: the settings of the job are model, sampler, task, limit",
    "steps=[1": "the override 'steps=[1' cannot be parsed",
    "-m sampler=confidence,nope": "sampler='nope' is unknown",
    "-m steps=4,16": "steps=16 exceeds gen_length=8",
    # issue 12: values that ran as another value, or failed with a traceback or an unrelated message
    "limit=9223372036854775808": "limit=9223372036854775808 is invalid: it must be at most 2**63 - 1",
    "block_length=0": "block_length=0 is invalid: it must be a positive integer dividing gen_length=8",
    "block_length=-8": "block_length=-8 is invalid: it must be a positive integer dividing gen_length=8",
    "output_dir=''": "output_dir='' is invalid: it must name a folder",
    "sampler=" + "x" * 5000: ("sampler='" + "x" * 60 + "...' (5000 characters) is unknown: File name too long: "
                              "choose one of "),
    "sampler=confidence sampler.name=" + "x" * 5000: "sampler='" + "x" * 60 + "...' is unknown: choose one of ",
    "sampler=c\u00f6nfidence": ("the override 'sampler=c\u00f6nfidence' cannot be parsed: the non-ASCII character "
                                 "'\u00f6' (U+00F6) is allowed only inside quotes: write sampler='c\u00f6nfidence'"),
    "sampler=confidence sampler.name='c\u00f6nfidence'": "sampler='c\u00f6nfidence' is unknown: choose one of ",
}


@pytest.mark.parametrize("override", list(CASES))
def test_each_bad_value_is_named_in_one_line(override, tiny_bert_dir, tmp_path):
    args = override.split()
    flags = [a for a in args if a.startswith("-")]
    with pytest.raises(ConfigError) as err:
        check_argv(flags + base(tiny_bert_dir, tmp_path) + [a for a in args if not a.startswith("-")])
    message = str(err.value)
    expected = CASES[override]
    for fragment in (expected,) if isinstance(expected, str) else expected:
        assert fragment in message
    assert "\n" not in message and len(message) < 600
    assert not (tmp_path / "rows").exists()


def test_a_good_grid_passes_every_cell(tiny_bert_dir, tmp_path):
    assert check_argv(["-m", *base(tiny_bert_dir, tmp_path), "sampler=confidence,margin", "steps=4,8"]) == 4
    assert check_argv(["--cfg", "job"]) == 0  # Hydra's own flags are left to Hydra


def test_missing_or_corrupt_model_directory(tiny_bert_dir, tmp_path):
    bad = corrupt_models(tiny_bert_dir, tmp_path)
    expected = {
        str(tmp_path / "nowhere"): "is not a directory: give a local model directory",
        str(bad["no_config"]): "has no config.json: not a Hugging Face model directory",
        str(bad["bad_json"]): "config.json is not valid JSON",
        str(bad["truncated"]): "model.safetensors' is corrupt (",
        str(bad["no_weights"]): "has no weights (",
    }
    for path, fragment in expected.items():
        with pytest.raises(ConfigError, match=None) as err:
            check_argv(base(tiny_bert_dir, tmp_path / "out") + [f"model.path={path}"])
        assert fragment in str(err.value) and "\n" not in str(err.value)
    check_model_dir(tiny_bert_dir)  # the intact directory passes


def test_missing_data_file_fails_before_the_model_loads(tiny_bert_dir, tmp_path, monkeypatch):
    folder = tmp_path / "tasks" / "toy_missing_data"
    folder.mkdir(parents=True)
    (folder / "toy_missing_data.yaml").write_text(MISSING_DATA_TASK)
    (folder / "utils.py").write_text(MISSING_DATA_UTILS)

    import boe_eval.models.loading as loading

    def no_loading(*args, **kwargs):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(loading, "load_denoiser", no_loading)
    with pytest.raises(ConfigError) as err:
        check_argv(base(tiny_bert_dir, tmp_path / "out") + [
            "task.lm_eval_task=toy_missing_data", f"task.include_paths=[{tmp_path / 'tasks'}]"])
    assert f"data file '{folder / 'data' / 'test.jsonl'}' does not exist" in str(err.value)


@dataclasses.dataclass
class RhoConfig:
    rho: float = 0.25

    def validate(self) -> None:
        if not 0 < self.rho <= 1:
            raise ConfigError(f"rho={self.rho!r} is invalid: it must be in (0, 1]")


@pytest.fixture
def rho_sampler():
    """A registered sampler with BoE's candidate fraction rho (paper sec. 4: rho in (0, 1])."""
    from boe_eval.samplers.base import SAMPLERS, Sampler

    class RhoSampler(Sampler):
        name = "rho_probe"

    SAMPLERS["rho_probe"] = (RhoSampler, RhoConfig)
    yield "rho_probe"
    del SAMPLERS["rho_probe"]


@pytest.mark.parametrize("value, fragment", [
    ("1.5", "rho=1.5 is invalid: it must be in (0, 1]"),
    ("0", "rho=0 is invalid: it must be in (0, 1]"),
    ("abc", "sampler.params.rho='abc' is invalid: sampler 'rho_probe' needs a number"),
    ("true", "sampler.params.rho=True is invalid: sampler 'rho_probe' needs a number"),
])
def test_sampler_parameters_are_typed_and_range_checked(rho_sampler, value, fragment, tiny_bert_dir, tmp_path):
    with pytest.raises(ConfigError) as err:
        check_argv(base(tiny_bert_dir, tmp_path) + ["sampler=confidence", f"sampler.name={rho_sampler}",
                                                     f"+sampler.params.rho={value}"])
    assert fragment in str(err.value)
    check_sampler_params(rho_sampler, {"rho": 1})  # an int is a valid float; 1 is in (0, 1]


@pytest.mark.skipif("boe" not in __import__("boe_eval.samplers", fromlist=["SAMPLERS"]).SAMPLERS,
                    reason="the BoE sampler has not landed")
@pytest.mark.parametrize("rho", ["0", "1.5", "-0.1"])
def test_boe_rejects_rho_outside_the_unit_interval(rho, tiny_bert_dir, tmp_path):
    with pytest.raises(ConfigError, match="rho"):
        check_argv(base(tiny_bert_dir, tmp_path) + ["sampler=confidence", "sampler.name=boe",
                                                     f"+sampler.params.rho={rho}"])


def test_validate_job_returns_the_typed_job(tiny_bert_dir, tmp_path):
    job = validate_job(compose(base(tiny_bert_dir, tmp_path) + ["temperature=1", "limit=3"]))
    assert job.temperature == 1.0 and isinstance(job.temperature, float)
    assert (job.limit, job.steps, job.model.path, job.sampler.members) == (3, 8, tiny_bert_dir,
                                                                          ["confidence", "margin", "entropy", "random"])


def test_a_failure_mid_job_leaves_complete_cells_only_and_a_rerun_finishes(tiny_bert_dir, tmp_path, monkeypatch):
    """The 3rd of 4 samplers crashes mid-cell: the two finished cells are kept whole, the crashed
    one leaves no file (not even a temporary one); the rerun skips the kept cells."""
    import boe_eval.models.loading as loading
    from boe_eval.harness.cli import run_job
    from boe_eval.store import read_rows

    real = loading.load_denoiser
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        den = real(*args, **kwargs)
        forward = den.model.forward

        def counted(*a, **k):
            calls["n"] += 1
            if calls["n"] == 2 * 6 * 8 + 20:  # 2 cells x 6 docs x 8 steps, then 20 calls into the 3rd
                raise RuntimeError("simulated crash")
            return forward(*a, **k)

        den.model.forward = counted
        return den

    monkeypatch.setattr(loading, "load_denoiser", crashing)
    overrides = base(tiny_bert_dir, tmp_path)[:-1] + ["batch_size=1"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_job(compose(overrides))
    files = sorted((tmp_path / "rows").iterdir())
    assert len(files) == 2 and all(f.suffix == ".jsonl" for f in files)
    for f in files:
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        assert [r["row_type"] for r in rows] == ["example"] * 6 + ["summary", "cell_complete"]
    kept = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}
    monkeypatch.setattr(loading, "load_denoiser", real)
    run_job(compose(overrides))
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files} == kept  # not rewritten
    assert len(list((tmp_path / "rows").iterdir())) == 4
    assert len(read_rows(tmp_path)) == 4 * 7


@pytest.mark.slow
def test_console_script_prints_one_line_and_exits_2(tiny_bert_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "BOE_TEST_TASKS": TOY_TASKS}
    exe = str(Path(sys.executable).with_name("boe-eval"))
    for args, fragment in [(["sampler=nope"], "sampler='nope' is unknown"),
                           (["-m", "temperature=0,-1"], "temperature=-1.0 is invalid")]:
        flags = [a for a in args if a.startswith("-")]
        proc = subprocess.run([exe, *flags, *base(tiny_bert_dir, tmp_path / "out"), *args[len(flags):]],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert lines[-1].startswith("boe-eval: error: ") and fragment in lines[-1]
        assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------- issue 12: environment
def test_a_model_directory_without_a_tokenizer_is_named_not_a_missing_library(tiny_bert_dir, tmp_path):
    folder = tmp_path / "no_tokenizer"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ConfigError) as err:
        check_argv(base(tiny_bert_dir, tmp_path / "out") + [f"model.path={folder}"])
    assert str(err.value) == (f"model path {str(folder)!r} has no tokenizer file (one of tokenizer.json, vocab.txt, "
                              "vocab.json, tokenizer.model, spiece.model, sentencepiece.bpe.model, vocab.model): copy "
                              "the model's tokenizer.json (or its vocabulary files) into it")


def test_a_malformed_task_yaml_is_named_not_reported_as_an_unknown_task(tiny_bert_dir, tmp_path):
    folder = tmp_path / "tasks" / "toy_broken"
    folder.mkdir(parents=True)
    (folder / "toy_broken.yaml").write_text('task: toy_broken\noutput_type: generate_until\n'
                                             'doc_to_text: "copy:{{source}}=\n  metric_list: [unclosed\n')
    with pytest.raises(ConfigError) as err:
        check_argv(base(tiny_bert_dir, tmp_path / "out") + ["task.lm_eval_task=toy_broken",
                                                            f"task.include_paths=[{tmp_path / 'tasks'}]"])
    message = str(err.value)
    assert message.startswith(f"task 'toy_broken' cannot be loaded: its YAML '{folder / 'toy_broken.yaml'}' is "
                              "malformed (line ")
    assert "\n" not in message
    # a name no YAML mentions is still an unknown task
    with pytest.raises(ConfigError, match="task 'toy_nowhere' is unknown to lm-eval"):
        check_argv(base(tiny_bert_dir, tmp_path / "out") + ["task.lm_eval_task=toy_nowhere",
                                                            f"task.include_paths=[{tmp_path / 'tasks'}]"])


@pytest.mark.parametrize("where", ["file", "inside a file"])
def test_output_dir_pointing_at_a_file_stops_before_anything_runs(tiny_bert_dir, tmp_path, where):
    target = tmp_path / "a_file"
    target.write_text("x")
    value = target if where == "file" else target / "sub"
    with pytest.raises(ConfigError) as err:
        check_argv(base(tiny_bert_dir, tmp_path)[:-2] + ["+progress=false", f"output_dir={value}"])
    assert str(err.value) == f"output_dir={str(value)!r} is invalid: {str(target)!r} is a file, not a folder"


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write into: root ignores mode bits, so then the immutable flag."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode:
            pytest.skip("cannot make a folder read-only for root here (no chattr +i)")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_a_read_only_output_dir_stops_before_the_model_loads(tiny_bert_dir, read_only_dir, monkeypatch):
    import boe_eval.models.loading as loading
    from boe_eval.harness.cli import run_job
    from boe_eval.store import StoreError

    monkeypatch.setattr(loading, "load_denoiser", lambda *a, **k: pytest.fail("the model must not be loaded"))
    with pytest.raises(StoreError) as err:
        run_job(compose(base(tiny_bert_dir, read_only_dir)))
    assert str(err.value) in (f"cannot write results to {str(read_only_dir)!r}: permission denied",
                              f"cannot write results to {str(read_only_dir)!r}: the file system is read-only")
    assert list(read_only_dir.iterdir()) == []


def test_a_full_disk_ends_the_job_with_one_line_and_leaves_no_temp_file(tiny_bert_dir, tmp_path, monkeypatch):
    """Every write of a file under the output folder fails with ENOSPC (a full disk, simulated): the
    job stops with one StoreError line naming the file, and no file is left behind."""
    import errno

    from boe_eval.harness.cli import run_job
    from boe_eval.store import StoreError

    out = tmp_path / "out"
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def fdopen(fd, *args, **kwargs):
        fh = real_fdopen(fd, *args, **kwargs)
        return Full(fh) if os.readlink(f"/proc/self/fd/{fd}").startswith(str(out)) else fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(StoreError) as err:
        run_job(compose(base(tiny_bert_dir, out) + ["sampler=confidence", "limit=2"]))
    message = str(err.value)
    assert message.startswith(f"cannot write results to '{out / 'rows'}/") and message.endswith(
        ".jsonl': no space left on the device")
    assert [p for p in out.rglob("*") if p.is_file()] == []


@pytest.mark.slow
def test_console_script_environment_failures_are_one_line_exit_2(tiny_bert_dir, tmp_path, read_only_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "BOE_TEST_TASKS": TOY_TASKS}
    exe = str(Path(sys.executable).with_name("boe-eval"))
    (tmp_path / "a_file").write_text("x")
    cases = [([f"output_dir={read_only_dir}"], "cannot write results to"),
             ([f"output_dir={tmp_path / 'a_file'}"], "is a file, not a folder"),
             (["output_dir=''"], "output_dir='' is invalid"),
             (["sampler=" + "y" * 5000], "(5000 characters) is unknown")]
    for args, fragment in cases:
        overrides = [o for o in base(tiny_bert_dir, tmp_path / "out") if not o.startswith("output_dir")]
        if not any(a.startswith("output_dir") for a in args):
            overrides.append(f"output_dir={tmp_path / 'out'}")
        proc = subprocess.run([exe, *overrides, *args, f"hydra.run.dir={tmp_path / 'hydra'}"], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert lines[0].startswith("boe-eval: error: ") and fragment in lines[0]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_stops_before_the_model_loads_and_never_falls_back(device, tiny_bert_dir, tmp_path,
                                                                              monkeypatch):
    """The preflight accepts `model.device=cuda` (a cluster grid is validated on a login node without
    GPUs); the job itself stops with one line before loading the model, never running on the CPU."""
    import boe_eval.models.loading as loading
    from boe_eval.harness.cli import run_job

    overrides = base(tiny_bert_dir, tmp_path / "out") + [f"model.device={device}", "sampler=confidence"]
    assert check_argv(overrides) == 1
    monkeypatch.setattr(loading, "load_denoiser", lambda *a, **k: pytest.fail("the model must not be loaded"))
    with pytest.raises(ConfigError) as err:
        run_job(compose(overrides))
    assert str(err.value).startswith(f"model.device={device!r} is invalid: this machine has no CUDA GPU usable by "
                                     "torch ")
    assert str(err.value).endswith("(torch.cuda.is_available() is False): use model.device=cpu")
    assert not list((tmp_path / "out").rglob("*.jsonl"))
