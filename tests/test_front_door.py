"""Start-up of `boe-eval` (issue 18): the task index, `--help`, and the warnings every run used to print."""

from __future__ import annotations

import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest

pytest.importorskip("lm_eval", reason="the harness is not installed in the small transformers-5 venv")

from boe_eval.errors import ConfigError  # noqa: E402
from boe_eval.harness import task_index as evaluate  # noqa: E402


class RecordingTaskManager:
    """Stands in for lm-eval's TaskManager: records how it was built; knows one project task, plus one of
    lm-eval's own tasks when built with its defaults."""

    builds: list[bool] = []

    def __init__(self, include_path=None, include_defaults=True, **kwargs):
        RecordingTaskManager.builds.append(include_defaults)
        project = evaluate.TASKS_DIR / "tiny_addition" / "tiny_addition.yaml"
        self.task_index = {"tiny_addition": SimpleNamespace(yaml_path=project)}
        if include_defaults:
            self.task_index["hellaswag"] = SimpleNamespace(yaml_path="/site-packages/lm_eval/tasks/hellaswag.yaml")
        self.all_tasks = sorted(self.task_index)


@pytest.fixture
def recording(monkeypatch):
    import lm_eval.tasks

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", RecordingTaskManager)
    RecordingTaskManager.builds = []
    evaluate.task_manager.cache_clear()
    yield RecordingTaskManager.builds
    evaluate.task_manager.cache_clear()


def test_a_project_task_never_indexes_lm_evals_own_tasks(recording):
    evaluate.check_task("tiny_addition")
    evaluate.check_task("tiny_addition")  # pre-flight and job share the cached index
    assert evaluate.task_manager_for("tiny_addition") is evaluate.task_manager(())
    assert recording == [False]


def test_lm_evals_own_tasks_are_indexed_only_for_a_name_the_project_lacks(recording):
    evaluate.check_task("hellaswag")
    assert recording == [False, True]
    with pytest.raises(ConfigError, match=r"task 'no_such_task' is unknown to lm-eval: the project's tasks are tiny_addition$"):
        evaluate.check_task("no_such_task")
    assert recording == [False, True]  # both indexes cached


def test_the_metadata_hint_of_lm_eval_is_dropped_and_nothing_else(recording):
    evaluate.task_manager(())
    task_logger = logging.getLogger("lm_eval.api.task")

    def passes(message: str) -> bool:
        record = logging.LogRecord("lm_eval.api.task", logging.WARNING, __file__, 1, message, None, None)
        return all(f.filter(record) for f in task_logger.filters)

    assert not passes("tiny_addition: Custom kwargs can be passed to `--metadata` in console (as json string)")
    assert passes("tiny_addition: some other warning")


def test_help_imports_no_torch_and_says_what_the_tool_does():
    code = (
        "import sys\n"
        "sys.argv = ['boe-eval', '--help']\n"
        "from boe_eval.harness import cli\n"
        "try:\n"
        "    cli.main()\n"
        "finally:\n"
        "    print('TORCH IMPORTED' if 'torch' in sys.modules else 'NO TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("boe-eval: benchmark the samplers (unmasking policies) of masked diffusion")
    assert out.stdout.rstrip().endswith("NO TORCH")


def _summary(variant: str, score: float, nfe: float, **extra) -> dict:
    from boe_eval.store import wilson_interval

    low, high = wilson_interval(round(score * 8), 8)
    return {"row_type": "summary", "model": "tiny_sudoku", "task": "tiny_sudoku", "primary_metric": "solved",
            "gen_length": 16, "steps": 8, "block_length": 16, "sampler": variant, "variant": variant,
            "n_examples": 8, "score": score, "score_ci_low": low, "score_ci_high": high,
            "metric.solved": score, "metric.cell_accuracy": 0.8125, "nfe": nfe, "forwards": nfe, "backwards": 0.0,
            "forward_equivalents": nfe, "wall_time_s": 1.234, "cell_id": f"{variant}0123", **extra}


def test_summary_table_states_n_units_interval_secondary_metrics_and_row_files():
    from boe_eval.analysis.tables import format_summary_table

    text = format_summary_table([_summary("confidence", 0.5, 8.0, agreement_with_confidence=None),
                                 _summary("margin", 0.625, 8.0, agreement_with_confidence=0.75)])
    heading, _, header, _, first, second, _, legend = text.split("\n")[:8]
    assert heading.startswith("model=tiny_sudoku task=tiny_sudoku metric=solved n=8 examples per sampler")
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == ["sampler", "n", "solved %", "95% CI", "cell_accuracy %", "NFE", "forwards", "backwards",
                       "fwd-equiv", "wall s", "agree w/ conf %", "rows file"]
    cells = [c.strip() for c in second.strip("|").split("|")]
    # 5/8 solved: Wilson 95% interval computed independently from the closed form
    z = 1.959963984540054
    centre, half = (0.625 + z * z / 16) / (1 + z * z / 8), z * (0.625 * 0.375 / 8 + z * z / 256) ** 0.5 / (1 + z * z / 8)
    assert cells == ["margin", "8", "62.5", f"[{100 * (centre - half):.1f}, {100 * (centre + half):.1f}]", "81.2",
                     "8.0", "8.0", "0.0", "8.0", "1.2", "75.0", "rows/margin0123.jsonl"]
    assert [c.strip() for c in first.strip("|").split("|")][10] == "–"  # confidence has no agreement with itself
    assert "means per sequence" in legend and "Wilson score interval" in legend and "wall s: seconds" in legend


def test_plot_file_is_named_after_what_it_plots_and_its_title_names_model_task_and_n(tmp_path, monkeypatch):
    from boe_eval.analysis import plots

    titles = []
    monkeypatch.setattr(plots, "_finish", lambda fig, ax, summaries, xlabel, path, _f=plots._finish: (
        titles.append(None), _f(fig, ax, summaries, xlabel, path), titles.__setitem__(-1, ax.get_title()))[1])
    same = plots.plot_summary([_summary("confidence", 0.5, 8.0), _summary("margin", 0.625, 8.0)], tmp_path)
    assert same.name == "tiny_sudoku_solved_by_sampler.png" and same.is_file()
    varied = plots.plot_summary([_summary("confidence", 0.5, 8.0), _summary("margin", 0.625, 4.0)], tmp_path)
    assert varied.name == "tiny_sudoku_solved_vs_nfe.png" and varied.is_file()
    assert titles == ["model tiny_sudoku on task tiny_sudoku (n=8 examples per sampler)"] * 2


def _cell(**changes):
    fields = {"model_path": "builtin:tiny_addition", "lm_eval_task": "tiny_addition", "include_paths": [],
              "gen_length": 12, "limit": 3, "apply_chat_template": False}
    return SimpleNamespace(**{**fields, **changes})


def test_a_prompt_too_long_for_the_model_is_refused_before_loading(monkeypatch):
    from boe_eval.harness import prompt_lengths
    from boe_eval.models import loading

    loads = []
    monkeypatch.setattr(loading, "load_denoiser", lambda *a, **k: loads.append(a))
    # tiny_addition prompts are "<10 digits>+<10 digits>=": 22 characters, one token each (character tokenizer),
    # in a 64-position model: gen_length 42 fits exactly, 43 does not
    prompt_lengths.check_prompt_lengths(_cell(gen_length=42))
    with pytest.raises(ConfigError, match=r"^prompt 0 of task tiny_addition has 22 tokens: with gen_length=43 that "
                                          r"is 65 positions, more than the 64 .* use gen_length <= 42"):
        prompt_lengths.check_prompt_lengths(_cell(gen_length=43))
    with pytest.raises(ConfigError, match=r"gen_length=64 leaves no room for a prompt in the 64 positions"):
        prompt_lengths.check_prompt_lengths(_cell(gen_length=64))
    assert loads == []


def test_prompts_with_room_to_spare_load_no_tokenizer(monkeypatch):
    from boe_eval.harness import prompt_lengths
    from boe_eval.models import loading

    def no_tokenizer(*args, **kwargs):
        raise AssertionError("the tokenizer was loaded")

    monkeypatch.setattr(loading, "load_tokenizer", no_tokenizer)
    prompt_lengths.check_prompt_lengths(_cell(gen_length=12))  # 22 bytes + 8 + 12 <= 64
    assert prompt_lengths.job_prompts(_cell(limit=2)) == ["7862140500+2137854497=", "9755908263+3264694736="]


def test_rows_md_says_which_cell_each_row_file_holds(tmp_path):
    from boe_eval.analysis.report import write_rows_indexes
    from boe_eval.store import cell_id, write_cell

    for variant, steps in (("confidence", 4), ("margin", 8)):
        identity = {"sampler": variant, "steps": steps}
        cid = cell_id(identity)
        example = {"row_type": "example", "doc_id": 0, "score": 1.0, "cell_id": cid}
        summary = {**_summary(variant, 1.0, float(steps)), "n_examples": 1, "steps": steps, "seed": 7, "cell_id": cid,
                   "sampler.threshold": 0.9 if variant == "margin" else None}
        write_cell(tmp_path, cid, [example, summary], identity=identity)
    write_cell(tmp_path, "damaged", [{"row_type": "example"}])  # no summary row: not listed
    (path,) = write_rows_indexes(tmp_path)
    assert path == tmp_path / "rows.md"
    table = [[c.strip() for c in line.strip("|").split("|")] for line in path.read_text().splitlines()
             if line.startswith("| ") and not line.startswith("| rows file")]
    expected = sorted([[f"confidence-steps4-{cell_id({'sampler': 'confidence', 'steps': 4})}.jsonl", "confidence", "–",
                        "tiny_sudoku", "16", "4", "7", "–", "1", "100.0"],
                       [f"margin-steps8-{cell_id({'sampler': 'margin', 'steps': 8})}.jsonl", "margin", "threshold=0.9",
                        "tiny_sudoku", "16", "8", "7", "–", "1", "100.0"]])
    assert table == expected
