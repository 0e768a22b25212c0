"""Tasks that act on the execution itself: Fail and Labels."""

from __future__ import annotations

from headwater.daemon.flow.base import LabelPair, Task
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import AnyValue, Text


@task("core.execution.Fail", old=["io.kestra.core.tasks.executions.Fail"])
class Fail(Task):
    """Fails the execution, always or when `condition` renders true."""

    condition: Text | None = None
    """An expression; the task fails only when it renders true."""
    errorMessage: Text = "Task failure"
    """The message the failure carries."""


@task("core.execution.Labels", old=["io.kestra.core.tasks.executions.Labels"])
class Labels(Task):
    """Adds labels to the running execution."""

    labels: dict[str, AnyValue] | list[LabelPair] | str
    """Labels to add: a map, a list of {key, value}, or an expression giving a map."""
