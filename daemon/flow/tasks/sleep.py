"""core.flow.Sleep: waits without holding a process."""

from __future__ import annotations

from headwater.daemon.flow.base import Task
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import Duration


@task("core.flow.Sleep", old=["io.kestra.core.tasks.flows.Sleep"])
class Sleep(Task):
    """Waits for `duration`."""

    duration: Duration
    """How long to wait (ISO-8601 duration)."""
