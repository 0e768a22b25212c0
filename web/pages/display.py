"""How values read on the page: relative times, durations, states, shas, hidden secrets.

Pure functions (Jinja filters wrap them), so each is tested on its own. Times are
seconds since the epoch in UTC, as the store keeps them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from headwater.daemon.engine.states import ACTIVE, State

HIDDEN = "••••••"  # what a secret value or a webhook key shows as
SHORT_SHA = 7
FINISHED = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "SKIPPED")
ACTIVE_STATES = tuple(s.value for s in State if s in ACTIVE)
ALL_STATES = tuple(s.value for s in State)

_UNITS = ((86_400, "d"), (3_600, "h"), (60, "min"), (1, "s"))


def clock(ts: float | None) -> str:
    """An absolute time people read: 2026-11-25 16:20:03 UTC."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(ts: float | None, now: float) -> str:
    """A time relative to now: `12 s ago`, `3 h ago`, `in 5 min`, `just now`."""
    if ts is None:
        return ""
    delta = now - ts
    if abs(delta) < 1:
        return "just now"
    amount = _largest_unit(abs(delta))
    return f"{amount} ago" if delta > 0 else f"in {amount}"


def _largest_unit(seconds: float) -> str:
    for size, unit in _UNITS:
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return "0 s"


def span(seconds: float | None) -> str:
    """A duration people read: 850 ms, 4.2 s, 3 min 4 s, 2 h 5 min, 3 d 4 h."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    parts = []
    for size, unit in _UNITS:
        if whole >= size:
            parts.append(f"{whole // size} {unit}")
            whole %= size
    return " ".join(parts[:2])


def short_sha(sha: str | None) -> str:
    return (sha or "")[:SHORT_SHA]


def first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0]


def state_class(state: str | None) -> str:
    """The CSS class of a state badge: `st-running`, `st-failed`, …"""
    return f"st-{(state or 'none').lower()}"


def pretty(value: Any) -> str:
    """A JSON value as indented text (strings as they are)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def redact(text: str, hidden: Iterable[str]) -> str:
    """`text` with every occurrence of each hidden value replaced (longest first)."""
    for value in sorted({h for h in hidden if h}, key=len, reverse=True):
        text = text.replace(value, HIDDEN)
    return text


def redact_value(value: Any, hidden: Iterable[str]) -> Any:
    """A JSON value with hidden strings replaced wherever they occur."""
    hidden = list(hidden)
    if not hidden:
        return value
    if isinstance(value, str):
        return redact(value, hidden)
    if isinstance(value, Mapping):
        return {k: redact_value(v, hidden) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, hidden) for v in value]
    return value


def trigger_name(trigger: Any) -> str:
    """What started an execution, in a word: the trigger's id or type, or `manual`."""
    if not isinstance(trigger, Mapping) or not trigger:
        return "manual"
    name = trigger.get("id") or str(trigger.get("type") or "").rsplit(".", 1)[-1]
    return str(name or "manual")


def field_time(ts: float) -> str:
    """A time as a filter field takes it (UTC, to the minute): 2026-11-25T16:20."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M")
