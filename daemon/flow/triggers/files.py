"""File triggers: fs.local.RealtimeTrigger (events) and fs.local.Trigger (polling)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from headwater.daemon.flow.base import Trigger
from headwater.daemon.flow.registry import trigger
from headwater.daemon.flow.types import Duration, PositiveInt, Text


def _check_files(raw: dict[str, Any], path: Any, report: Any) -> None:
    pattern = raw.get("regExp")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as exc:
            report((*path, "regExp"), f"regExp is not a valid regular expression: {exc}")
    for name in ("from", "moveDirectory"):
        folder = raw.get(name)
        if isinstance(folder, str) and "{{" not in folder and not folder.startswith("/"):
            report((*path, name), f"'{name}' must be an absolute directory path, got '{folder}'")


@trigger("fs.local.RealtimeTrigger")
class RealtimeFileTrigger(Trigger):
    """Starts an execution for each file event in a directory, as it happens."""

    from_: Text = Field(alias="from")
    """The directory to watch (one the deployment allows)."""
    on: Literal["CREATE", "UPDATE", "DELETE", "CREATE_OR_UPDATE"] = "CREATE_OR_UPDATE"
    """Which events fire."""
    recursive: bool = False
    """Watch sub-directories too."""
    regExp: Text | None = None
    """Only paths matching this regular expression."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        _check_files(raw, path, report)


@trigger("fs.local.Trigger")
class PollingFileTrigger(Trigger):
    """Polls a directory and starts one execution per batch of new files."""

    from_: Text = Field(alias="from")
    """The directory to poll (one the deployment allows)."""
    interval: Duration = "PT60S"
    """Time between polls."""
    regExp: Text | None = None
    """Only paths matching this regular expression."""
    recursive: bool = False
    """Look in sub-directories too."""
    action: Literal["NONE", "MOVE", "DELETE"] = "NONE"
    """What to do with a file once picked up."""
    moveDirectory: Text | None = None
    """Where MOVE puts files."""
    maxFiles: PositiveInt = 25
    """Most files in one batch."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        _check_files(raw, path, report)
        if raw.get("action") == "MOVE" and not raw.get("moveDirectory"):
            report(path, "action MOVE needs 'moveDirectory'")
