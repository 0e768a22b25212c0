"""core.log.Log and its older twin core.debug.Echo."""

from __future__ import annotations

from typing import Any

from headwater.daemon.flow.base import LogLevel, Task
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import Text, TextOrList


@task("core.log.Log", old=["io.kestra.core.tasks.log.Log"])
class Log(Task):
    """Writes a message (or several) to the execution's logs."""

    message: TextOrList
    """The message, or a list of messages, to log."""
    level: LogLevel = "INFO"
    """Log level: TRACE, DEBUG, INFO, WARN or ERROR."""


@task("core.debug.Echo", old=["io.kestra.core.tasks.debugs.Echo"])
class Echo(Task):
    """Older form of Log: writes `format` to the logs."""

    format: Text | None = None
    """The text to log."""
    message: TextOrList | None = None
    """Accepted as in Log."""
    level: LogLevel = "INFO"
    """Log level: TRACE, DEBUG, INFO, WARN or ERROR."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        if "format" not in raw and "message" not in raw:
            report(path, "missing required property 'format' (or 'message'): the text to log")
