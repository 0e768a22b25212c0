"""Schedule triggers as the scheduler sees them: cron times on a wall clock, and the
schedules of a deployed flow revision.

Times are instants: seconds since the epoch, UTC. A cron is read on the wall clock of
the trigger's `timezone`. On daylight-saving days (docs/triggers.md):

- a wall time the clock skips (02:30 when 02:00 jumps to 03:00) fires at the first
  valid instant after it, the moment the clock jumps; several skipped times fire once;
- a wall time the clock repeats (01:30 when 02:00 falls back to 01:00) fires once, at
  its first occurrence.

Computing a next time costs a croniter step (about 50 µs), so results are memoised by
(cron, zone, instant): ten thousand triggers with one cron cost one step per minute.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from croniter import croniter

from headwater.daemon.flow import model as _model  # noqa: F401  (completes the type models)
from headwater.daemon.flow import plugindefaults
from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.triggers.schedule import NICKNAMES, Schedule

TRIGGER_TYPE = "core.trigger.Schedule"
"""`trigger.type` of the executions a schedule starts, and the type its states record."""
TYPE_FRAGMENT = "Schedule"
"""Text every spelling of the Schedule type contains: flows without it are not read."""
MEMO_SIZE = 65_536  # (cron, zone, instant) -> next or previous time, kept in memory
MAX_SKIP_STEPS = 100_000  # cron steps searched for a valid time before giving up
ZERO = timedelta(0)


class Cron:
    """A cron expression on the wall clock of one time zone."""

    def __init__(self, expression: str, with_seconds: bool = False, timezone: str = "UTC") -> None:
        fields = NICKNAMES.get(expression.strip().lower(), expression).split()
        if with_seconds:  # Kestra writes seconds first, croniter wants them last
            fields = [*fields[1:], fields[0]]
        self.expression = " ".join(fields)
        self.timezone = timezone
        croniter(self.expression)  # a bad expression fails here, not at its first fire

    def next_after(self, instant: float) -> float:
        """The first fire time strictly after `instant`."""
        return _next_after(self.expression, self.timezone, instant)

    def first_from(self, instant: float) -> float:
        """The first fire time at or after `instant`."""
        previous = self.previous_before(instant + 1e-6)
        if previous is not None and previous >= instant:
            return previous
        return self.next_after(instant)

    def previous_before(self, instant: float) -> float | None:
        """The last fire time strictly before `instant` (None if there is none)."""
        return _previous_before(self.expression, self.timezone, instant)

    def times(self, start: float, end: float) -> Iterator[float]:
        """Fire times from `start` to `end`, both included, oldest first."""
        moment = self.first_from(start)
        while moment <= end:
            yield moment
            moment = self.next_after(moment)

    def latest(self, start: float, end: float, limit: int) -> list[float]:
        """The last `limit` fire times from `start` to `end` (both included), oldest first."""
        found: list[float] = []
        moment = self.previous_before(end + 1e-6)
        while moment is not None and moment >= start and len(found) < limit:
            found.append(moment)
            moment = self.previous_before(moment)
        return found[::-1]

    def wall(self, instant: float) -> str:
        """`instant` in RFC 3339 on this cron's wall clock (`Z` in UTC), as `trigger.date`."""
        return _wall(instant, self.timezone)


@functools.lru_cache(maxsize=MEMO_SIZE)
def cron_for(expression: str, with_seconds: bool, timezone: str) -> Cron:
    """A shared Cron: checking an expression costs 0.3 ms, and thousands of triggers
    usually share a few."""
    return Cron(expression, with_seconds, timezone)


@functools.lru_cache(maxsize=MEMO_SIZE)
def _next_after(expression: str, timezone: str, instant: float) -> float:
    zone = ZoneInfo(timezone)
    steps = croniter(expression, _naive(instant, zone))
    for _ in range(MAX_SKIP_STEPS):  # the second pass of a repeated hour is skipped
        found = to_instant(steps.get_next(datetime), zone)
        if found > instant:
            return found
    raise ValueError(f"cron '{expression}' has no time after {instant}")


@functools.lru_cache(maxsize=MEMO_SIZE)
def _previous_before(expression: str, timezone: str, instant: float) -> float | None:
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(instant, zone)
    start = local.replace(tzinfo=None)
    if local.fold:  # in the second pass of a repeated hour: the first pass is all earlier
        start += (local.replace(fold=0).utcoffset() or ZERO) - (local.utcoffset() or ZERO)
    steps = croniter(expression, start)
    for _ in range(MAX_SKIP_STEPS):
        try:
            found = to_instant(steps.get_prev(datetime), zone)
        except (ValueError, OverflowError):  # before year 1
            return None
        if found < instant:
            return found
    return None


def _naive(instant: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(instant, zone).replace(tzinfo=None)


def to_instant(wall: datetime, zone: ZoneInfo) -> float:
    """The instant a naive wall time stands for: its first occurrence when the clock
    repeats it, the moment the clock jumps when the clock skips it."""
    instant = wall.replace(tzinfo=zone, fold=0).timestamp()
    if _naive(instant, zone) == wall:
        return instant
    # Skipped: fold=1 reads it with the offset after the jump (an instant before the
    # jump), fold=0 with the offset before it (an instant after). The jump lies between.
    low = wall.replace(tzinfo=zone, fold=1).timestamp()
    high = instant
    before = datetime.fromtimestamp(low, zone).utcoffset()
    while high - low > 1:
        middle = float(int((low + high) // 2))
        if datetime.fromtimestamp(middle, zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high


@functools.lru_cache(maxsize=MEMO_SIZE)
def _wall(instant: float, timezone: str) -> str:
    moment = datetime.fromtimestamp(instant, ZoneInfo(timezone))
    return _rfc3339(moment)


@functools.lru_cache(maxsize=MEMO_SIZE)
def utc_text(instant: float) -> str:
    """`instant` in RFC 3339 UTC, second precision unless it has a fraction."""
    return _rfc3339(datetime.fromtimestamp(instant, UTC))


def _rfc3339(moment: datetime) -> str:
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


# -- the schedules of a flow revision ------------------------------------------------------


@dataclass(frozen=True)
class ScheduleSpec:
    """One Schedule trigger of a deployed flow revision, with what firing it needs."""

    namespace: str
    flow_id: str
    trigger_id: str
    revision: int
    commit_sha: str | None
    cron: Cron
    recover: str
    """ALL, LAST or NONE: which missed times fire."""
    inputs: dict[str, Any] | None
    labels: dict[str, str]
    """The flow's labels with the trigger's on top."""
    flow_has_inputs: bool
    stop_after: frozenset[str]
    disabled: bool
    """The trigger or its flow is disabled."""
    fingerprint: str
    """A hash of the trigger's definition and the flow's `disabled`: a change resets it."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.flow_id, self.trigger_id)

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.flow_id}/{self.trigger_id}"

    def to_state(self) -> dict[str, Any]:
        """What the trigger's state keeps, so a restart reads it without parsing the flow."""
        return {
            "cron": self.cron.expression,
            "timezone": self.cron.timezone,
            "recover": self.recover,
            "inputs": self.inputs,
            "labels": self.labels,
            "flowInputs": self.flow_has_inputs,
            "stopAfter": sorted(self.stop_after),
            "disabled": self.disabled,
            "commit": self.commit_sha,
        }


def spec_from_state(
    key: tuple[str, str, str], revision: int, fingerprint: Any, value: Any
) -> ScheduleSpec | None:
    """The spec `to_state` kept for a revision; None when it is missing or unreadable."""
    if not isinstance(value, dict) or not isinstance(fingerprint, str):
        return None
    try:
        return ScheduleSpec(
            namespace=key[0],
            flow_id=key[1],
            trigger_id=key[2],
            revision=revision,
            commit_sha=value["commit"],
            cron=cron_for(value["cron"], False, value["timezone"]),  # croniter order already
            recover=value["recover"],
            inputs=value["inputs"],
            labels=dict(value["labels"]),
            flow_has_inputs=bool(value["flowInputs"]),
            stop_after=frozenset(value["stopAfter"]),
            disabled=bool(value["disabled"]),
            fingerprint=fingerprint,
        )
    except (KeyError, TypeError, ValueError):
        return None


def read_schedules(
    namespace: str, flow_id: str, revision: int, commit_sha: str | None, source: str
) -> list[ScheduleSpec]:
    """The Schedule triggers of a deployed revision (from `commit_sha`).

    A deployed revision passed validation, so this reads only what it needs (YAML, the
    plugin defaults, the trigger models): about ten times faster than a full parse,
    which keeps the scheduler's start-up at a fraction of a second for 10,000 flows.
    """
    if TYPE_FRAGMENT not in source:
        return []
    raw = yaml.load(source, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(raw, dict):
        return []
    raw = plugindefaults.apply(raw)
    found = []
    for item in raw.get("triggers") or []:
        entry = reg.REGISTRY.resolve(item.get("type") if isinstance(item, dict) else None)
        if entry is None or entry.model is not Schedule:
            continue
        found.append(_spec(namespace, flow_id, (revision, commit_sha), raw, item))
    return found


def _spec(
    namespace: str,
    flow_id: str,
    version: tuple[int, str | None],
    flow: dict[str, Any],
    item: dict[str, Any],
) -> ScheduleSpec:
    trigger = Schedule.model_validate(item)
    flow_disabled = _truthy(flow.get("disabled"))
    definition = json.dumps([item, flow_disabled], sort_keys=True, default=str)
    return ScheduleSpec(
        namespace=namespace,
        flow_id=flow_id,
        trigger_id=trigger.id,
        revision=version[0],
        commit_sha=version[1],
        cron=cron_for(trigger.cron, trigger.withSeconds, trigger.timezone),
        recover=trigger.recoverMissedSchedules,
        inputs=dict(trigger.inputs) if trigger.inputs else None,
        labels={**_labels(flow.get("labels")), **_labels(item.get("labels"))},
        flow_has_inputs=bool(flow.get("inputs")),
        stop_after=frozenset(trigger.stopAfter or ()),
        disabled=trigger.disabled or flow_disabled,
        fingerprint=hashlib.sha256(definition.encode()).hexdigest()[:32],
    )


def _labels(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        return {str(i["key"]): str(i["value"]) for i in value if isinstance(i, dict)}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
