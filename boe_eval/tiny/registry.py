"""The built-in tasks, by name (`boe_eval.tiny.task.TinyTask`)."""

from __future__ import annotations

from boe_eval.errors import ConfigError
from boe_eval.tiny import addition, chain, pivot, pivot_dense, shell, sudoku, word_problems
from boe_eval.tiny.task import TinyTask

TINY_TASKS: dict[str, TinyTask] = {task.name: task for task in (sudoku.TASK, addition.TASK, word_problems.TASK, pivot.TASK, chain.TASK, pivot_dense.TASK, shell.TASK)}


def get_tiny_task(name: str) -> TinyTask:
    """The built-in task `name` (the `tiny_` prefix may be left out)."""
    key = name if name in TINY_TASKS else f"tiny_{name}"
    if key not in TINY_TASKS:
        raise ConfigError(f"built-in task {name!r} does not exist: choose one of {', '.join(sorted(TINY_TASKS))}")
    return TINY_TASKS[key]
