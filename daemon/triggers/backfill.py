"""Backfill: run a schedule over a past range, each time once, at a bounded rate.

A backfill is asked for with a range (`from`, `to`, both included). It is checked at
once (the trigger exists, the range is in the past and names at most
`MAX_BACKFILL_TIMES` times) and then kept in the trigger's state in the store, with a
cursor, so a restart carries on where it stopped. The scheduler fires
`BACKFILL_PER_STEP` times every `BACKFILL_STEP_SECONDS`, each with the key a schedule
fire of that time has: a time the schedule already fired is not fired again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from headwater.daemon.errors import HeadwaterError
from headwater.daemon.triggers.schedule import ScheduleSpec, utc_text

MAX_BACKFILL_TIMES = 10_000  # times one backfill may cover; a larger range is refused
BACKFILL_PER_STEP = 10  # executions a backfill creates at each step …
BACKFILL_STEP_SECONDS = 1.0  # … and the time between steps: at most 10 a second


class BackfillError(HeadwaterError):
    """A backfill request that cannot be done; the message says which field and why."""


class TriggerNotFound(BackfillError):
    pass


class BackfillRunning(BackfillError):
    pass


@dataclass
class Backfill:
    """A backfill in progress: the next time to fire and the last one."""

    cursor: float
    end: float
    total: int
    requested_at: float
    next_step_at: float = 0.0

    def take(self, spec: ScheduleSpec, count: int) -> list[float]:
        """The next `count` times at most, moving the cursor past them."""
        taken: list[float] = []
        while self.cursor <= self.end and len(taken) < count:
            taken.append(self.cursor)
            self.cursor = spec.cron.next_after(self.cursor)
        return taken

    @property
    def done(self) -> bool:
        return self.cursor > self.end

    def to_state(self) -> dict[str, Any]:
        """What the trigger's state keeps (None once it is done)."""
        return {
            "cursor": self.cursor,
            "end": self.end,
            "total": self.total,
            "requestedAt": self.requested_at,
        }

    @classmethod
    def from_state(cls, value: Any) -> Backfill | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                float(value["cursor"]),
                float(value["end"]),
                int(value["total"]),
                float(value["requestedAt"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def parse_moment(text: Any, name: str, timezone: str) -> float:
    """`text` (RFC 3339, or a date) as an instant; without an offset it is read on the
    schedule's wall clock. `name` is the request field, for the error."""
    if not isinstance(text, str) or not text.strip():
        raise BackfillError(f"{name}: give a date and time, such as 2026-01-31T00:00:00Z")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BackfillError(
            f"{name}: cannot read {text[:60]!r} as a date and time "
            "(use RFC 3339, such as 2026-01-31T00:00:00Z, or a date such as 2026-01-31)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.timestamp()


def plan_backfill(spec: ScheduleSpec, start: float, end: float, now: float) -> Backfill:
    """Check a range against a schedule; the backfill that covers it."""
    if start > end:
        raise BackfillError(f"from ({utc_text(start)}) is after to ({utc_text(end)})")
    if end > now:
        raise BackfillError(
            f"to ({utc_text(end)}) is in the future; a backfill covers past times only "
            "(the schedule fires the times to come)"
        )
    total = 0
    for _ in spec.cron.times(start, end):
        total += 1
        if total > MAX_BACKFILL_TIMES:
            raise BackfillError(
                f"the range holds more than {MAX_BACKFILL_TIMES} times of cron "
                f"'{spec.cron.expression}'; backfill a shorter range at a time"
            )
    if total == 0:
        raise BackfillError(
            f"no time of cron '{spec.cron.expression}' ({spec.cron.timezone}) falls "
            f"between {utc_text(start)} and {utc_text(end)}"
        )
    return Backfill(spec.cron.first_from(start), end, total, now, now)


def summary(spec: ScheduleSpec, backfill: Backfill) -> dict[str, Any]:
    """The API's answer to a backfill request."""
    last = spec.cron.previous_before(backfill.end + 1e-6)
    return {
        "namespace": spec.namespace,
        "flowId": spec.flow_id,
        "triggerId": spec.trigger_id,
        "times": backfill.total,
        "first": spec.cron.wall(backfill.cursor),
        "last": spec.cron.wall(last) if last is not None else None,
        "perSecond": BACKFILL_PER_STEP / BACKFILL_STEP_SECONDS,
    }
