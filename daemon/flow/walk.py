"""Walking the raw (plain dict) form of a flow: every task, wherever it is nested."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.base import Flowable
from headwater.daemon.yamlsource import Path

FLOW_TASK_LISTS = ("tasks", "errors", "finally")


def iter_tasks(flow: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every task mapping of a raw flow with its path, parents before children."""
    for name in FLOW_TASK_LISTS:
        yield from _iter_list(flow.get(name), (name,))


def _iter_list(tasks: Any, path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    if not isinstance(tasks, list):
        return
    for i, item in enumerate(tasks):
        if isinstance(item, dict):
            yield (*path, i), item
            yield from iter_children(item, (*path, i))


def iter_children(task: dict[str, Any], path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The tasks nested in a raw flowable task (none for a runnable one)."""
    entry = reg.REGISTRY.resolve(task.get("type"), "task")
    if entry is None or not issubclass(entry.model, Flowable):
        return
    for suffix, tasks in entry.model.child_lists(task):
        yield from _iter_list(tasks, (*path, *suffix))
