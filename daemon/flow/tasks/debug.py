"""core.debug.Return: renders a value into the task's outputs."""

from __future__ import annotations

from headwater.daemon.flow.base import Task
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import Text


@task("core.debug.Return", old=["io.kestra.core.tasks.debugs.Return"])
class Return(Task):
    """Renders `format` and returns it as the output `value`."""

    format: Text | None = None
    """The text (usually an expression) to render into `outputs.<id>.value`."""
