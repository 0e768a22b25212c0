"""core.trigger.Schedule: cron schedules."""

from __future__ import annotations

import functools
import zoneinfo
from typing import Any, Literal

from headwater.daemon.flow.base import Trigger
from headwater.daemon.flow.registry import trigger
from headwater.daemon.flow.types import Text

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@functools.lru_cache(maxsize=4096)
def cron_problem(cron: str, with_seconds: bool) -> str | None:
    """Why `cron` is not a valid expression, or None when it is."""
    expression = NICKNAMES.get(cron.strip().lower(), cron)
    fields = expression.split()
    want = 6 if with_seconds else 5
    if len(fields) != want:
        extra = "" if with_seconds else " (set withSeconds: true for a seconds field)"
        return f"cron '{cron}' has {len(fields)} fields; expected {want}{extra}"
    names = (("second",) if with_seconds else ()) + FIELD_NAMES
    if _valid(fields):
        return None
    for i, (name, value) in enumerate(zip(names, fields, strict=True)):
        alone = ["*"] * len(fields)
        alone[i] = value
        if not _valid(alone):
            return f"cron '{cron}' is not valid: its {name} field '{value}' is not acceptable"
    return f"cron '{cron}' is not valid"


FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")


def _valid(fields: list[str]) -> bool:
    if len(fields) == 6:  # croniter takes seconds last, Kestra (Quartz-like) writes them first
        fields = [*fields[1:], fields[0]]
    from croniter import croniter  # here: a flow without a schedule never needs it

    try:
        croniter(" ".join(fields))
    except (ValueError, KeyError):
        return False
    return True


@functools.lru_cache(maxsize=1024)
def timezone_problem(name: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown timezone '{name}' (use an IANA name such as Europe/Paris or UTC)"
    return None


@trigger("core.trigger.Schedule", old=["io.kestra.core.models.triggers.types.Schedule"])
class Schedule(Trigger):
    """Starts an execution at each time the cron expression gives."""

    cron: Text
    """Five cron fields (six with withSeconds), or @hourly, @daily, @weekly, @monthly, @yearly."""
    withSeconds: bool = False
    """The cron expression starts with a seconds field."""
    timezone: Text = "UTC"
    """IANA time zone the cron is read in."""
    recoverMissedSchedules: Literal["ALL", "LAST", "NONE"] = "ALL"
    """Times missed while nothing ran: fire them all, only the last, or none."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        cron = raw.get("cron")
        if isinstance(cron, str):
            problem = cron_problem(cron, raw.get("withSeconds") is True)
            if problem:
                report((*path, "cron"), problem)
        zone = raw.get("timezone")
        if isinstance(zone, str):
            problem = timezone_problem(zone)
            if problem:
                report((*path, "timezone"), problem)
