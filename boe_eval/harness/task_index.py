"""The lm-eval task index: the project's own tasks (`tasks/`), and lm-eval's ~14,700 only for a name
the project does not define (indexing them takes tens of seconds)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from boe_eval.errors import ConfigError
from boe_eval.provenance import REPO_ROOT

TASKS_DIR = REPO_ROOT / "tasks"


class _DropMetadataHint(logging.Filter):
    """lm-eval logs, at every load of a task with a `custom_dataset` (all the built-in tiny tasks), a hint
    that custom kwargs can be passed with its CLI's `--metadata`: advice for lm-eval's own CLI that boe-eval
    users cannot act on, printed twice per run (pre-flight and job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "can be passed to `--metadata`" not in record.getMessage()


@functools.lru_cache(maxsize=8)
def task_manager(include_paths: tuple[str, ...], include_defaults: bool = False):
    """lm-eval's TaskManager over the project's tasks (and `include_paths`); with `include_defaults`, over
    lm-eval's own ~14,700 task YAMLs too, which takes tens of seconds to index: see `task_manager_for`."""
    from lm_eval.tasks import TaskManager

    task_logger = logging.getLogger("lm_eval.api.task")
    if not any(isinstance(f, _DropMetadataHint) for f in task_logger.filters):
        task_logger.addFilter(_DropMetadataHint())
    return TaskManager(include_path=[str(TASKS_DIR), *include_paths], include_defaults=include_defaults)


def task_manager_for(name: str, include_paths: tuple[str, ...] = ()):
    """The TaskManager that knows `name`: the project's index, else (only then) the one with lm-eval's own tasks."""
    manager = task_manager(include_paths)
    if name in manager.all_tasks:
        return manager
    return task_manager(include_paths, include_defaults=True)


def project_tasks(include_paths: tuple[str, ...] = ()) -> list[str]:
    """Names of the tasks defined under `tasks/` (and any extra include paths)."""
    manager = task_manager(include_paths)
    roots = [str(Path(p).resolve()) for p in (TASKS_DIR, *include_paths)]
    return sorted(
        name
        for name, entry in manager.task_index.items()
        if getattr(entry, "yaml_path", None) and any(str(entry.yaml_path).startswith(r) for r in roots)
    )


def check_task(name: str, include_paths: tuple[str, ...] = ()) -> None:
    """Fail early, before any model is loaded, when lm-eval does not know the task (lm-eval's own tasks are
    indexed only for a name that the project's tasks do not define)."""
    if name not in task_manager_for(name, include_paths).all_tasks:
        raise ConfigError(
            f"task {name!r} is unknown to lm-eval: the project's tasks are {', '.join(project_tasks(include_paths))}"
        )


__all__ = ["TASKS_DIR", "check_task", "project_tasks", "task_manager", "task_manager_for"]
