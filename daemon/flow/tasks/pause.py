"""core.flow.Pause: waits for a delay or for someone to resume it."""

from __future__ import annotations

from typing import Any

from headwater.daemon.flow.base import Flowable
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import Duration


@task("core.flow.Pause", old=["io.kestra.core.tasks.flows.Pause"], flowable=True)
class Pause(Flowable):
    """Pauses the execution until `delay` passes or a resume call comes.

    With `timeout`, a pause that is not resumed in time fails.
    """

    delay: Duration | None = None
    """Resume by itself after this long."""
    timeout: Duration | None = None
    """Fail when not resumed within this long."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        if raw.get("delay") is not None and raw.get("timeout") is not None:
            report((*path, "timeout"), "give either 'delay' or 'timeout' to a Pause, not both")
