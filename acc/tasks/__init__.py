"""Tasks: training objectives and evaluation-only measurements, discovered from this folder."""

from __future__ import annotations

from functools import cache

from acc.registry import Registry, discover
from acc.tasks.base import EvalOnlyTask, LayerTask, Task, TaskError


@cache
def task_registry() -> Registry:
    """Every Task class in ``acc/tasks/``, keyed by class name."""
    return discover("acc.tasks", Task, lambda cls: cls.__name__, "task")


__all__ = ["EvalOnlyTask", "LayerTask", "Task", "TaskError", "task_registry"]
