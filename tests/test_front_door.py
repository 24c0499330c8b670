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
