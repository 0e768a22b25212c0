"""core.execution.Fail and core.execution.Labels: tasks that act on the execution."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from headwater.daemon.engine.context import is_true, text_of
from headwater.daemon.engine.states import State
from headwater.daemon.engine.taskapi import TaskContext, TaskFailed, TaskResult, implements
from headwater.daemon.engine.tasks.properties import model_of
from headwater.daemon.flow.checks import RESERVED_LABEL_PREFIX
from headwater.daemon.flow.tasks.execution import Fail, Labels


@implements("core.execution.Fail")
def fail(ctx: TaskContext) -> TaskResult:
    """Fail with `errorMessage`: always, or when `condition` renders true.

    The condition is read as Kestra's If reads it: false, "false", "", 0 and null are
    false, anything else is true.
    """
    task = model_of(ctx, Fail)
    if task.condition is not None and not is_true(ctx.render(task.condition)):
        return TaskResult()
    return TaskResult(state=State.FAILED, error=ctx.render_text(task.errorMessage))


@implements("core.execution.Labels")
def labels(ctx: TaskContext) -> TaskResult:
    """Add `labels` to the execution: a map, a list of {key, value}, or an expression
    giving either (or a JSON string of either)."""
    task = model_of(ctx, Labels)
    raw: Any = task.labels
    if isinstance(raw, list):
        raw = [item.model_dump() if isinstance(item, BaseModel) else item for item in raw]
    found = _pairs(_decoded(ctx.render(raw)))
    reserved = sorted(key for key in found if key.startswith(RESERVED_LABEL_PREFIX))
    if reserved:
        raise TaskFailed(
            f"label {reserved[0]!r} cannot be set: keys starting with "
            f"{RESERVED_LABEL_PREFIX} are reserved for Headwater"
        )
    return TaskResult(labels=found)


def _decoded(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise TaskFailed(
                f"labels must be a map or a list of {{key, value}}; got text that is not JSON: "
                f"{value[:60]!r}"
            ) from None
    return value


def _pairs(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = [_pair(item, index) for index, item in enumerate(value)]
    else:
        raise TaskFailed(
            f"labels must be a map or a list of {{key, value}}, got {text_of(value)!r}"
        )
    found: dict[str, str] = {}
    for key, item in items:
        name = text_of(key).strip()
        if not name:
            raise TaskFailed("a label's key is empty")
        found[name] = text_of(item)
    return found


def _pair(item: Any, index: int) -> tuple[Any, Any]:
    if isinstance(item, dict) and set(item) == {"key", "value"}:
        return item["key"], item["value"]
    raise TaskFailed(f"labels[{index}] must be a map with 'key' and 'value', got {text_of(item)!r}")
